"""Conditional optimal-transport probability path (flow matching, Lipman et al. 2023).

x_t = (1 - (1 - sigma_min) t) x0 + t x1, with x0 ~ N(0, I) noise and x1 data; its velocity
d x_t / dt = x1 - (1 - sigma_min) x0 is the regression target. At t=0 the path is pure noise, at
t=1 it is the data up to sigma_min of noise. The path knows nothing of the network or solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CondOTPath:
    """The path of one data point x1 from noise x0; tensors (B, ...) with t of shape (B,)."""

    sigma_min: float = 1e-5

    def _t(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t on the path between noise x0 and data x1 at times t."""
        t = self._t(t, x1)
        return (1 - (1 - self.sigma_min) * t) * x0 + t * x1

    def target_velocity(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """u_t = x1 - (1 - sigma_min) x0 (constant along the path)."""
        return x1 - (1 - self.sigma_min) * x0

    def data_estimate(self, x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The x1 a velocity points to from x_t at time t: x1 = (1 - sigma_min) x_t + (1 - (1 - sigma_min) t) v
        (x0 eliminated from the path and its velocity)."""
        t = self._t(t, x_t)
        return (1 - self.sigma_min) * x_t + (1 - (1 - self.sigma_min) * t) * velocity

    def velocity_to(self, x_t: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity at (x_t, t) whose data estimate is x1 (inverse of :meth:`data_estimate`; t < 1)."""
        t = self._t(t, x_t)
        return (x1 - (1 - self.sigma_min) * x_t) / (1 - (1 - self.sigma_min) * t)

    def loss(self, predicted: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor,
             t: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error between predicted and target velocity (scalar); with ``t`` (B,),
        each example's error weighted by (1 + t), as JASCO trains (later, data-side times count more)."""
        error = (predicted.float() - self.target_velocity(x0, x1).float()) ** 2
        if t is not None:
            error = (1 + self._t(t, error).float()) * error
        return torch.mean(error)
