"""Checkpoint files: a versioned, declared run artifact plus (optionally) the training state.

Layout of ``chordflow.checkpoint/2`` (``torch.save`` of plain types and tensors only)::

    {"format": "chordflow.checkpoint/2",
     "artifact": RunArtifact.to_payload(),      # what sampling needs (model/artifact.py)
     "training": TrainingState.to_payload() | None}   # what resuming needs; None in a sampling-only file

Files are always read with ``torch.load(weights_only=True)``: a file that carries code or other
objects (a pickled callable runs when unpickled) is refused, never executed. Each known format has a
parser in :data:`PARSERS`; ``chordflow.checkpoint/1`` (the flat dict written before the artifact was
declared) holds plain types and tensors too, so it still loads and is read into the same objects.
A released JASCO ``state_dict.bin`` (or its folder) is a third format, ``jasco.release``, read into a
sampling-only artifact (model/jasco/).
Written atomically (temp + rename).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from model.artifact import RunArtifact, TrainingState
from model.network.build import build_network
from model.plain_file import PlainFileError, RefusedFileError, read_plain_file
from pipeline.atomic import atomic_path
from stages.latents.encodec_jasco import STATE_FILE
from pipeline.config import ConfigError

CHECKPOINT_FORMAT = "chordflow.checkpoint/2"
#: The flat layout of the first trainer (config, params, stats, weights, optimizer ... side by side).
LEGACY_FORMAT = "chordflow.checkpoint/1"
FORMAT_FAMILY = "chordflow.checkpoint/"
#: Meta's released JASCO ``state_dict.bin`` (model/jasco/release.py), read as a sampling-only artifact.
JASCO_RELEASE_FORMAT = "jasco.release"


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
    """Read a checkpoint of any known format — or a released JASCO folder / ``state_dict.bin`` —
    into a :class:`Checkpoint`; a clear :class:`CheckpointError` otherwise."""
    path = Path(path)
    if path.is_dir() and (path / STATE_FILE).is_file():
        path = path / STATE_FILE
    payload = _read(path, map_location)
    fmt = _format_of(payload)
    if fmt not in PARSERS:
        raise CheckpointError(f"{path}: {_unknown_format(fmt)}")
    try:
        return PARSERS[fmt](payload, path)
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: malformed {fmt} file ({type(exc).__name__}: {exc})") from exc


def _format_of(payload: Any) -> Any:
    """The format tag; a released JASCO state dict has none, and is known by its two keys."""
    if not isinstance(payload, dict):
        return None
    if "format" not in payload and {"best_state", "xp.cfg"} <= set(payload):
        return JASCO_RELEASE_FORMAT
    return payload.get("format")


def load_artifact(path: str | Path, map_location: str | torch.device = "cpu") -> RunArtifact:
    """The run artifact of a checkpoint (what the sampler reads)."""
    return load_checkpoint(path, map_location).artifact


def model_from_artifact(artifact: RunArtifact, use_ema: bool = True) -> torch.nn.Module:
    """Rebuild the network from the stored config alone and load its (EMA) weights (strict).

    Built on the meta device and given the stored tensors, so a 400M model costs no initialisation
    and no second copy of its weights."""
    with torch.device("meta"):
        model = build_network(artifact.model_config)
    model.load_state_dict(artifact.weights(use_ema), strict=True, assign=True)
    return model.eval()


# ----------------------------------------------------------------------------- reading
def _read(path: Path, map_location: str | torch.device) -> Any:
    try:
        return read_plain_file(path, map_location)
    except RefusedFileError as exc:
        raise CheckpointError(f"{exc}; {_unknown_format(None)}") from None
    except PlainFileError as exc:
        raise CheckpointError(str(exc)) from None


def _unknown_format(fmt: Any) -> str:
    known = ", ".join(PARSERS)
    if isinstance(fmt, str) and fmt.startswith(FORMAT_FAMILY):
        return f"checkpoint format {fmt!r} is not one this chordflow reads ({known}); a newer chordflow wrote it?"
    return f"not a chordflow checkpoint of a known version ({known})"


def _parse_release(payload: Mapping[str, Any], path: Path) -> Checkpoint:
    """A released JASCO model: its artifact with JASCO's defaults (T5 from $CHORDFLOW_T5; see
    model/jasco/artifact.py), no training state (fine-tuning starts afresh, as in AudioCraft)."""
    from model.jasco.artifact import artifact_of_release
    from model.jasco.release import ReleaseError, release_from_payload

    try:
        artifact = artifact_of_release(release_from_payload(payload, path))
    except ReleaseError as exc:
        raise CheckpointError(str(exc)) from None
    return Checkpoint(artifact=artifact, training=None, format=JASCO_RELEASE_FORMAT)


def _parse_current(payload: Mapping[str, Any], path: Path) -> Checkpoint:
    training = payload["training"]
    return Checkpoint(artifact=RunArtifact.from_payload(payload["artifact"]),
                      training=TrainingState.from_payload(training) if training is not None else None,
                      format=CHECKPOINT_FORMAT)


def _parse_legacy(payload: Mapping[str, Any], path: Path) -> Checkpoint:
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


#: Format tag -> parser (of the payload and the file it came from).
PARSERS: dict[str, Callable[[Mapping[str, Any], Path], Checkpoint]] = {
    CHECKPOINT_FORMAT: _parse_current,
    LEGACY_FORMAT: _parse_legacy,
    JASCO_RELEASE_FORMAT: _parse_release,
}

