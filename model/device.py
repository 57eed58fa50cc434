"""Which torch device to run on, shared by the trainer and the sampler (neither imports the other)."""

from __future__ import annotations

import warnings

import torch

#: Device name that picks CUDA when it is available, else the CPU.
AUTO_DEVICE = "auto"


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; any other name as torch spells it."""
    if name == AUTO_DEVICE:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 matmuls natively (AVX-512 BF16 or AMX); elsewhere torch emulates them."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast_bfloat16(device: torch.device, on_gpu: bool, on_cpu: bool) -> bool:
    """Whether to run the forward pass under bf16 autocast on ``device`` (CUDA: ``on_gpu``; CPU: ``on_cpu``).

    Warns when the CPU would emulate bf16, since that is slower than float32 there."""
    if device.type == "cuda":
        return on_gpu
    if device.type != "cpu" or not on_cpu:
        return False
    if not cpu_has_native_bfloat16():
        warnings.warn("mixed_precision_cpu: this CPU has neither AVX-512 BF16 nor AMX, so bfloat16 is emulated "
                      "and training is slower than in float32", RuntimeWarning, stacklevel=2)
    return True
