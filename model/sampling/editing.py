"""Frames of a piece: which to keep when editing a user's audio (and a velocity that keeps them),
and which frames each temporal control covers when it is given over part of the timeline only.

Continuation keeps the clip's first seconds and generates the rest; in/outpainting regenerates
given spans and keeps everything else (frames past the clip's end are generated: outpainting).
Kept frames are pinned while solving: their velocity is the exact velocity of their straight path
from the noise to the user's latents, so every solver carries them there and the network sees
them as context at every step; after solving they are set to the user's latents exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from music.conditions import TEMPORAL_CONDITIONS
from music.frames import frames_for_seconds


class EditError(ValueError):
    """An edit request that does not fit the clip or the piece."""


@dataclass(frozen=True)
class Edit:
    """Latents to keep while generating: (B, T, D) normalised latents and a (B, T) bool mask."""

    latents: torch.Tensor
    mask: torch.Tensor


def free_frames(n_frames: int, frame_rate: float, continue_after: float | None,
                regenerate: Sequence[Sequence[float]] | None) -> torch.Tensor:
    """(n_frames,) bool: the frames to generate (True) of a piece of ``n_frames``."""
    if (continue_after is None) == (regenerate is None):
        raise EditError("editing a clip: give continue_after or regenerate (one of them)")
    seconds = n_frames / frame_rate
    free = torch.zeros(n_frames, dtype=torch.bool)
    if continue_after is not None:
        if not 0 < continue_after < seconds:
            raise EditError(f"continue_after {continue_after} s must lie inside the piece (0, {seconds:g}) s")
        free[frames_for_seconds(continue_after, frame_rate):] = True
        return free
    if not regenerate:
        raise EditError("regenerate: give at least one [start, end] span")
    for span in regenerate:
        if len(span) != 2 or not 0 <= float(span[0]) < float(span[1]) <= seconds:
            raise EditError(f"regenerate span {list(span)}: need 0 <= start < end <= {seconds:g} s")
        free[frames_for_seconds(float(span[0]), frame_rate): frames_for_seconds(float(span[1]), frame_rate)] = True
    return free


def kept_latents(latents: Sequence[np.ndarray], free: torch.Tensor, dim: int, min_frames: int = 0) -> Edit:
    """Each item's (T_i, D) encoded clip and the frames to generate -> the :class:`Edit`; a clip
    shorter than ``min_frames`` (a continuation's kept part) is an error."""
    n_frames = free.shape[0]
    out = torch.zeros(len(latents), n_frames, dim)
    mask = torch.zeros(len(latents), n_frames, dtype=torch.bool)
    for i, item in enumerate(latents):
        item = torch.from_numpy(np.asarray(item, dtype=np.float32)[:n_frames])
        if item.shape[1] != dim:
            raise EditError(f"clip latents have {item.shape[1]} channels, the model {dim}")
        if len(item) < min_frames:
            raise EditError(f"clip {i} is {len(item)} frames long, shorter than the {min_frames} frames to keep")
        out[i, : len(item)] = item
        mask[i, : len(item)] = ~free[: len(item)]
    return Edit(latents=out, mask=mask)


def pinned_velocity(free: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pin: torch.Tensor,
                    pinned: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A velocity function whose ``pin`` frames (B, T) move along their straight path (``pinned``)."""

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.where(pin[..., None], pinned, free(t, x))

    return velocity


def span_frames(spans: Sequence[Mapping[str, Sequence[Sequence[float]]] | None], n_frames: int,
                frame_rate: float) -> torch.Tensor | None:
    """Per item ``{control: [[start, end], ...]}`` (None: whole clip) -> (B, T, 3) bool frames each
    temporal control covers, or None when no item limits any control."""
    if all(not item for item in spans):
        return None
    seconds = n_frames / frame_rate
    out = torch.ones(len(spans), n_frames, len(TEMPORAL_CONDITIONS), dtype=torch.bool)
    for i, item in enumerate(spans):
        for name, ranges in (item or {}).items():
            if name not in TEMPORAL_CONDITIONS:
                raise EditError(f"spans: {name!r} is not a temporal control ({', '.join(TEMPORAL_CONDITIONS)})")
            column = torch.zeros(n_frames, dtype=torch.bool)
            for span in ranges:
                if len(span) != 2 or not 0 <= float(span[0]) < float(span[1]):
                    raise EditError(f"spans.{name} {list(span)}: need 0 <= start < end (seconds)")
                column[frames_for_seconds(float(span[0]), frame_rate):
                       frames_for_seconds(min(float(span[1]), seconds), frame_rate)] = True
            out[i, :, TEMPORAL_CONDITIONS.index(name)] = column
    return out
