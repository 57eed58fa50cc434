"""How audible the seams of an edited clip are: spectral flux at each seam against the clip's own
flux elsewhere (1 = a seam changes the spectrum no more than the music does anyway)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: STFT of the flux (about 32 ms windows, 8 ms hops at 32 kHz).
SEAM_N_FFT = 1024
SEAM_HOP = 256
#: Flux frames within this distance of a seam count as "at the seam"; farther than ``CLEAR_S`` as inside.
SEAM_WINDOW_S = 0.05
CLEAR_S = 0.25


def spectral_flux(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) audio -> (frame times in s, half-wave rectified flux of the log-magnitude spectrum)."""
    audio = np.asarray(audio, dtype=np.float64)
    if len(audio) < SEAM_N_FFT * 2:
        raise ValueError(f"clip of {len(audio)} samples is too short to measure seams")
    window = np.hanning(SEAM_N_FFT)
    starts = np.arange(0, len(audio) - SEAM_N_FFT + 1, SEAM_HOP)
    frames = np.stack([audio[s: s + SEAM_N_FFT] * window for s in starts])
    magnitude = np.log1p(np.abs(np.fft.rfft(frames, axis=1)) * 10.0)
    flux = np.maximum(np.diff(magnitude, axis=0), 0.0).sum(axis=1)
    times = (starts[1:] + SEAM_N_FFT / 2) / sample_rate
    return times, flux


def seam_flux_ratio(audio: np.ndarray, sample_rate: int, seams_s: Sequence[float]) -> dict[str, float | list]:
    """Per seam: the largest flux within ``SEAM_WINDOW_S`` of it, over the median of the same
    windowed maximum at every frame farther than ``CLEAR_S`` from every seam (so a steady clip
    measures 1 wherever one looks); and their mean (``flux_ratio``)."""
    from scipy.ndimage import maximum_filter1d

    times, flux = spectral_flux(audio, sample_rate)
    seams = [float(s) for s in seams_s if times[0] < float(s) < times[-1]]
    if not seams:
        return {"seams_s": [], "per_seam": [], "flux_ratio": None}
    half = max(1, int(round(SEAM_WINDOW_S * sample_rate / SEAM_HOP)))
    local = maximum_filter1d(flux, size=2 * half + 1, mode="nearest")
    distance = np.min(np.abs(times[:, None] - np.asarray(seams)[None, :]), axis=1)
    inside = local[distance > CLEAR_S]
    reference = max(float(np.median(inside)) if inside.size else float(np.median(local)), 1e-9)
    per_seam = [float(local[int(np.argmin(np.abs(times - s)))] / reference) for s in seams]
    return {"seams_s": seams, "per_seam": [round(r, 3) for r in per_seam],
            "flux_ratio": round(float(np.mean(per_seam)), 3)}


def edit_seams(continue_after: float | None, regenerate: Sequence[Sequence[float]] | None,
               seconds: float) -> list[float]:
    """The times where kept and generated audio meet."""
    if continue_after is not None:
        return [float(continue_after)]
    edges = sorted({float(t) for span in regenerate or [] for t in span})
    return [t for t in edges if 0.0 < t < seconds]
