"""Shaping a guided velocity against the conditional one, in data space (x1 estimates).

Classifier-free guidance extrapolates: with large weights the data estimate overshoots, in a flow
over log-spectra as over-loud, over-tonal frames. Two known remedies, both optional:

- adaptive projected guidance (Sadat et al. 2024): split the guidance's change of the data estimate
  into a part along the conditional estimate and a part orthogonal to it, and scale only the
  parallel part by ``parallel`` (1 = plain guidance, 0 = orthogonal only);
- guidance rescale (Lin et al. 2024): pull the guided estimate's spread back to the conditional
  estimate's, blended by ``rescale`` (0 = off, 1 = fully).

Both act per example over all its (frames, channels); the velocity handed back is the one whose
data estimate is the shaped one, so the solver never sees the difference.
"""

from __future__ import annotations

import torch

from model.flow.path import CondOTPath


def _per_example(values: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, values.dim()))


def shape_guidance(path: CondOTPath, x_t: torch.Tensor, t: torch.Tensor, conditional: torch.Tensor,
                   guided: torch.Tensor, parallel: float = 1.0, rescale: float = 0.0) -> torch.Tensor:
    """The guided velocity (B, ...) with its parallel part scaled and its spread rescaled.

    Args:
        x_t: (B, ...) state; t: (B,) flow times below 1.
        conditional: (B, ...) velocity with every given control (what guidance extrapolates from).
        guided: (B, ...) the guidance mix.
    """
    if parallel == 1.0 and rescale == 0.0:
        return guided
    dims = _per_example(x_t)
    x1_conditional = path.data_estimate(x_t, conditional, t)
    x1_guided = path.data_estimate(x_t, guided, t)
    if parallel != 1.0:
        change = x1_guided - x1_conditional
        norm = (x1_conditional * x1_conditional).sum(dim=dims, keepdim=True).clamp_min(1e-12)
        along = (change * x1_conditional).sum(dim=dims, keepdim=True) / norm * x1_conditional
        x1_guided = x1_conditional + change - (1.0 - parallel) * along
    if rescale != 0.0:
        ratio = x1_conditional.std(dim=dims, keepdim=True) / x1_guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
        x1_guided = rescale * ratio * x1_guided + (1.0 - rescale) * x1_guided
    return path.velocity_to(x_t, x1_guided, t)
