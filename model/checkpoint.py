"""Checkpoint files: a versioned, declared run artifact plus (optionally) the training state.

Layout of ``chordflow.checkpoint/2`` (``torch.save`` of plain types and tensors only)::

    {"format": "chordflow.checkpoint/2",
     "artifact": RunArtifact.to_payload(),      # what sampling needs (model/artifact.py)
     "training": TrainingState.to_payload() | None}   # what resuming needs; None in a sampling-only file

Files are always read with ``torch.load(weights_only=True)``: a file that carries code or other
objects (a pickled callable runs when unpickled) is refused, never executed. Each known format has a
parser in :data:`PARSERS`; ``chordflow.checkpoint/1`` (the flat dict written before the artifact was
declared) holds plain types and tensors too, so it still loads and is read into the same objects.
Written atomically (temp + rename).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from model.artifact import RunArtifact, TrainingState
from model.network.transformer import FlowTransformer
from pipeline.atomic import atomic_path
from pipeline.config import ConfigError

CHECKPOINT_FORMAT = "chordflow.checkpoint/2"
#: The flat layout of the first trainer (config, params, stats, weights, optimizer ... side by side).
LEGACY_FORMAT = "chordflow.checkpoint/1"
FORMAT_FAMILY = "chordflow.checkpoint/"


class CheckpointError(ValueError):
    """A file is not a chordflow checkpoint, or lacks what the caller needs."""


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A file's contents: the artifact, the training state if it has one, and its format."""

    artifact: RunArtifact
    training: TrainingState | None
    format: str


def save_checkpoint(path: str | Path, artifact: RunArtifact, training: TrainingState | None = None) -> Path:
    """Write the artifact (and the training state, if given) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "artifact": artifact.to_payload(),
               "training": training.to_payload() if training is not None else None}
    with atomic_path(path) as temp:
        torch.save(payload, temp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint of any known format; a clear :class:`CheckpointError` otherwise."""
    path = Path(path)
    payload = _read_plain(path, map_location)
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt not in PARSERS:
        raise CheckpointError(f"{path}: {_unknown_format(fmt)}")
    try:
        return PARSERS[fmt](payload)
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: malformed {fmt} file ({type(exc).__name__}: {exc})") from exc


def load_artifact(path: str | Path, map_location: str | torch.device = "cpu") -> RunArtifact:
    """The run artifact of a checkpoint (what the sampler reads)."""
    return load_checkpoint(path, map_location).artifact


def model_from_artifact(artifact: RunArtifact, use_ema: bool = True) -> FlowTransformer:
    """Rebuild the network from the stored config alone and load its (EMA) weights."""
    model = FlowTransformer(artifact.model_config)
    model.load_state_dict(artifact.weights(use_ema))
    return model.eval()


# ----------------------------------------------------------------------------- reading
def _read_plain(path: Path, map_location: str | torch.device) -> Any:
    """``torch.load(weights_only=True)``, with each way of failing said plainly."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path}: cannot read checkpoint (not a file written by torch.save, or truncated)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused: the file carries code or objects other than plain data and "
                              f"tensors{_refused_global(exc)}, which chordflow never unpickles (it could run "
                              f"anything); {_unknown_format(None)}") from None
    except Exception as exc:  # torch raises several types for damaged archives
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc


def _refused_global(exc: Exception) -> str:
    """`` (it names module.attr)`` from torch's weights-only message, when it says which global."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    return f" (it names {found.group(1)})" if found else ""


def _unknown_format(fmt: Any) -> str:
    known = ", ".join(PARSERS)
    if isinstance(fmt, str) and fmt.startswith(FORMAT_FAMILY):
        return f"checkpoint format {fmt!r} is not one this chordflow reads ({known}); a newer chordflow wrote it?"
    return f"not a chordflow checkpoint of a known version ({known})"


def _parse_current(payload: Mapping[str, Any]) -> Checkpoint:
    training = payload["training"]
    return Checkpoint(artifact=RunArtifact.from_payload(payload["artifact"]),
                      training=TrainingState.from_payload(training) if training is not None else None,
                      format=CHECKPOINT_FORMAT)


def _parse_legacy(payload: Mapping[str, Any]) -> Checkpoint:
    """``chordflow.checkpoint/1`` -> the same objects; it never stored generation settings, so it gets
    ``GenerateConfig()``'s recommended ones, like every run trained today."""
    model_params = payload["model_params"]
    artifact = {
        "model_config": payload["model_config"], "codec": payload["codec"], "vocabulary": payload["vocabulary"],
        "stats": payload["stats"], "normalisation": payload["normalisation"], "text": model_params["text"],
        "generate": {}, "weights": {"model": payload["model"], "ema": payload.get("ema")},
        "provenance": {"steps": payload["step"], "text_source": payload.get("text", {}).get("source")},
    }
    training = {
        "model_params": model_params, "train_config": payload["train_config"],
        "world": payload["data"]["rank_world"], "step": payload["step"],
        "segment_frames": payload["data"]["segment_frames"], "optimizer": payload["optimizer"],
        "scheduler": payload["scheduler"], "rng": payload["rng"], "losses": payload["losses"],
        "val_losses": payload["val_losses"],
    }
    return Checkpoint(artifact=RunArtifact.from_payload(artifact), training=TrainingState.from_payload(training),
                      format=LEGACY_FORMAT)


#: Format tag -> parser; a second format (e.g. an imported JASCO checkpoint) plugs in here.
PARSERS: dict[str, Callable[[Mapping[str, Any]], Checkpoint]] = {
    CHECKPOINT_FORMAT: _parse_current,
    LEGACY_FORMAT: _parse_legacy,
}

