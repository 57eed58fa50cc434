"""Run a salience model over a long HCQT in overlapping time windows, with the whole-track result.

Every conv layer uses `same` padding, so an output frame depends on the input frames within
``TIME_RECEPTIVE_RADIUS`` (7) of it. A window that extends at least that far past the frames it
keeps (or ends where the track ends) therefore computes exactly what a whole-track pass computes
for those frames (BatchNorm at inference is a fixed per-channel affine: no batch statistics).
The original code cut hard 2000-frame chunks instead, which changes outputs near the cuts.

All windows have the same length, so they can be stacked into batches.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from stages.melody.constants import N_BINS, TIME_RECEPTIVE_RADIUS


class SalienceModel(Protocol):
    """A backend: ``predict((B, 6, 360, L) float32, lowest_bin) -> (B, 360 - lowest_bin, L) float32``."""

    name: str
    backend: str

    def predict(self, hcqt: np.ndarray, lowest_bin: int = 0) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class Window:
    """Frames [start, stop) go through the model; frames [keep_start, keep_stop) are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def plan_windows(n_frames: int, chunk_frames: int, overlap: int = TIME_RECEPTIVE_RADIUS) -> list[Window]:
    """Cover ``n_frames`` with windows of ``chunk_frames + 2 * overlap`` frames (or one window).

    Each window keeps ``chunk_frames`` frames that are at least ``overlap`` frames from any window
    edge that is not a track edge. ``overlap`` below the receptive radius breaks exactness.
    """
    if chunk_frames < 1 or overlap < 0:
        raise ValueError(f"chunk_frames must be >= 1 and overlap >= 0, got {chunk_frames}, {overlap}")
    length = chunk_frames + 2 * overlap
    if n_frames <= length:
        return [Window(0, n_frames, 0, n_frames)]
    windows = []
    for keep_start in range(0, n_frames, chunk_frames):
        keep_stop = min(keep_start + chunk_frames, n_frames)
        # Centre the window on its kept frames, shifted inwards at the track edges.
        start = min(max(keep_start - overlap, 0), n_frames - length)
        windows.append(Window(start, start + length, keep_start, keep_stop))
    return windows


def predict_salience(model: SalienceModel, hcqt: np.ndarray, chunk_frames: int = 1000,
                     batch_size: int = 1, overlap: int = TIME_RECEPTIVE_RADIUS,
                     progress: bool = False, lowest_bin: int = 0) -> np.ndarray:
    """Salience of a whole track, computed window by window.

    Args:
        hcqt: (6, 360, T) float32 log-HCQT.
        chunk_frames: frames kept per window (peak memory ~0.6 MB per frame of a window in
            flight with the torch backend, times ``batch_size``).
        batch_size: windows per model call.
        lowest_bin: bins below it are not computed (left 0); the JASCO condition needs bins from
            ``JASCO_FIRST_GROUP_BIN`` up only.
    Returns:
        (360, T) float32 salience in [0, 1].
    """
    windows = plan_windows(hcqt.shape[-1], chunk_frames, overlap)
    salience = np.zeros((N_BINS, hcqt.shape[-1]), dtype=np.float32)
    batches = [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"{model.name} ({model.backend})", unit="batch", leave=False)
    for batch in batches:
        output = model.predict(np.stack([hcqt[:, :, w.start:w.stop] for w in batch]), lowest_bin)
        for window, out in zip(batch, output):
            lo, hi = window.keep_start - window.start, window.keep_stop - window.start
            salience[lowest_bin:, window.keep_start:window.keep_stop] = out[:, lo:hi]
    return salience
