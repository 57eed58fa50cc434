"""ODE integration from noise (t=0) to data (t=1) with torchdiffeq.

The solver only sees a velocity function ``v(t, x)``; guidance, conditions and the network live
outside. Fixed-step methods take ``steps`` uniform steps; adaptive ones (dopri5) use tolerances.
The number of velocity evaluations (model calls) is counted and returned, since that is the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torchdiffeq import odeint

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FIXED_STEP_METHODS: dict[str, int] = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "bosh3", "adaptive_heun", "dopri8")
#: Common names accepted for torchdiffeq's methods.
ALIASES: dict[str, str] = {"heun": "heun2"}


class SolverError(ValueError):
    """Unknown method or bad step count."""


@dataclass(frozen=True)
class SolveResult:
    """The state at t=1 (shape of x0) and how many times the velocity function was called."""

    x1: torch.Tensor
    function_evaluations: int


def resolve_method(method: str) -> str:
    method = ALIASES.get(method, method)
    if method not in FIXED_STEP_METHODS and method not in ADAPTIVE_METHODS:
        raise SolverError(f"unknown ODE solver {method!r}; choose one of "
                          f"{sorted(FIXED_STEP_METHODS) + list(ADAPTIVE_METHODS) + sorted(ALIASES)}")
    return method


def calls_per_run(method: str, steps: int) -> int | None:
    """Model calls a fixed-step method makes for ``steps`` steps (None for adaptive methods)."""
    method = resolve_method(method)
    return FIXED_STEP_METHODS[method] * steps if method in FIXED_STEP_METHODS else None


def solve(velocity: VelocityFn, x0: torch.Tensor, *, method: str = "euler", steps: int = 16,
          atol: float = 1e-4, rtol: float = 1e-4, t0: float = 0.0, t1: float = 1.0,
          adaptive_t1: float | None = None) -> SolveResult:
    """Integrate dx/dt = velocity(t, x) from x(t0) = x0 to t1 (adaptive methods: to ``adaptive_t1`` if given)."""
    method = resolve_method(method)
    calls = 0

    def counted(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return velocity(t, x)

    if method in FIXED_STEP_METHODS:
        if steps < 1:
            raise SolverError(f"steps must be >= 1, got {steps}")
        # fixed-step methods step along the requested time grid itself
        grid = torch.linspace(t0, t1, steps + 1, device=x0.device)
        trajectory = odeint(counted, x0, grid, method=method)
    else:
        times = torch.tensor([t0, t1 if adaptive_t1 is None else adaptive_t1], dtype=torch.float32, device=x0.device)
        trajectory = odeint(counted, x0, times, method=method, atol=atol, rtol=rtol)
    return SolveResult(x1=trajectory[-1], function_evaluations=calls)
