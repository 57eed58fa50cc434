"""Which torch device to run on, shared by the trainer and the sampler (neither imports the other)."""

from __future__ import annotations

import torch

#: Device name that picks CUDA when it is available, else the CPU.
AUTO_DEVICE = "auto"


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; any other name as torch spells it."""
    if name == AUTO_DEVICE:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
