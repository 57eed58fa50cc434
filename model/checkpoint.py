"""Checkpoints: one file holding everything to rebuild, resume or sample a model.

Contents: the model config (sizes), the params it was trained with (model/train sections), the
latent normalisation stats, the codec (name + options) that made the latents, the chord
vocabulary, the text encoder, model + EMA weights, optimizer/scheduler/RNG state, the step
(= data position, see model/data.py) and the loss history. Written atomically (temp + rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.config import ModelConfig
from model.network import FlowTransformer
from pipeline.atomic import atomic_path

CHECKPOINT_FORMAT = "chordflow.checkpoint/1"


class CheckpointError(ValueError):
    """A file is not a chordflow checkpoint, or lacks what the caller needs."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format tag) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, temp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a clear error if the file is missing or not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    return payload


def model_from_checkpoint(payload: dict[str, Any], use_ema: bool = True) -> FlowTransformer:
    """Rebuild the network from the stored config alone and load its (EMA) weights."""
    model = FlowTransformer(ModelConfig.from_dict(payload["model_config"]))
    weights = payload.get("ema") if use_ema and payload.get("ema") is not None else payload["model"]
    model.load_state_dict(weights)
    return model.eval()
