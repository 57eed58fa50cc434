"""The optimisation schedule and the per-step randomness of the trainer (model/training/train.py)."""

from __future__ import annotations

import math

import numpy as np
import torch

from model.config import TIME_SAMPLINGS, TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


#: Devices with a fused AdamW kernel (one pass over each tensor instead of ~10 elementwise ops).
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def optimizer_kernel(device: torch.device) -> dict[str, bool | None]:
    """AdamW's implementation flags for ``device``: the fused kernel where torch has one.

    Same update maths as the per-tensor loop (the single-pass kernel rounds differently, at
    float32 epsilon); on the demo's 7.3 M parameters it is ~3x faster on CPU, and its
    fewer parallel regions matter most when the CPU is shared (bench/report/train_speed.md)."""
    if device.type in FUSED_ADAMW_DEVICES:
        return {"fused": True, "foreach": None}
    return {"fused": None, "foreach": True}


def step_generator(seed: int, rank: int, step: int, stream: int = 0) -> torch.Generator:
    """A torch generator that depends only on (seed, rank, step, stream)."""
    state = np.random.SeedSequence([seed, rank, step, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def flow_times(batch_size: int, generator: torch.Generator, how: str) -> torch.Tensor:
    """(batch_size,) training flow times in (0, 1), drawn from ``generator`` as ``how`` says."""
    if how == "uniform":
        return torch.rand(batch_size, generator=generator)
    if how == "logit_normal":
        return torch.sigmoid(torch.randn(batch_size, generator=generator))
    raise ValueError(f"train.time_sampling: {how!r} is not one of {TIME_SAMPLINGS}")
