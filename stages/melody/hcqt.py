"""The harmonic constant-Q transform (HCQT) that DeepSalience takes as input.

One CQT per harmonic h (fmin = 32.7 Hz x h, 360 bins at 60 per octave, hop 256 at 22050 Hz), all
cropped to the shortest, then log-magnitude scaled to [0, 1] against the maximum over the whole
track and all harmonics, exactly as the original ``compute_hcqt`` (``method="per_harmonic"``).

``method="shared_octaves"`` (the stage's default, ``melody.hcqt``): the harmonics an octave apart
(0.5, 1, 2, 4) are the same transform shifted by 60 bins, so one 540-bin CQT from 16.35 Hz gives all
four, and only 3 and 5 need their own. The values differ from the per-harmonic ones only where
librosa's octave-by-octave downsampling rounds differently (quiet low bins, track edges): 3.4x less
HCQT time, 99.8 % of frames the same melody index (bench/report/melody_speed.md).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from stages.melody.constants import (
    BINS_PER_OCTAVE,
    FMIN,
    HARMONICS,
    HCQT_METHODS,
    HOP_LENGTH,
    N_BINS,
    SALIENCE_FRAME_RATE,
    SAMPLE_RATE,
    TOP_DB,
)

#: librosa's ``amplitude_to_db`` default ``amin``: magnitudes below it count as it.
AMPLITUDE_FLOOR: float = 1e-5
#: Shorter clips are padded with silence to this many samples before the CQT.
MIN_SAMPLES: int = HOP_LENGTH


def compute_hcqt(audio: np.ndarray, sr: int = SAMPLE_RATE, method: str = "per_harmonic") -> np.ndarray:
    """Log-magnitude HCQT of a mono signal.

    Args:
        audio: (n_samples,) float mono audio at ``sr`` (must be 22050 Hz, the model's rate).
        method: one of ``HCQT_METHODS`` (module doc).
    Returns:
        (6, 360, n_frames) float32 in [0, 1], n_frames = 1 + n_samples // 256 (frame k centred at
        k * 256 / 22050 s).
    """
    from pipeline.numba_cache import import_librosa

    librosa = import_librosa()  # heavy import, only where the transform runs

    if method not in HCQT_METHODS:
        raise ValueError(f"HCQT method {method!r} is not one of {', '.join(HCQT_METHODS)}")
    if sr != SAMPLE_RATE:
        raise ValueError(f"the HCQT needs audio at {SAMPLE_RATE} Hz, got {sr} Hz (resample first)")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected non-empty mono audio (n_samples,), got shape {audio.shape}")
    n_frames = 1 + audio.size // HOP_LENGTH
    # librosa rejects a handful of samples ("too short for 6-octave CQT"): pad tiny clips with
    # silence and keep the frames of the real length.
    audio = np.pad(audio, (0, max(0, MIN_SAMPLES - audio.size)))
    with warnings.catch_warnings():
        # the downsampled low octaves of a short clip are shorter than their FFT: expected, harmless
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        magnitudes = _magnitudes(librosa, audio, sr, method)
    n_frames = min([n_frames] + [m.shape[1] for m in magnitudes])
    return log_normalise(np.stack([m[:, :n_frames] for m in magnitudes]))


def _magnitudes(librosa, audio: np.ndarray, sr: int, method: str) -> list[np.ndarray]:
    """(360, frames) float32 CQT magnitude per harmonic, in ``HARMONICS`` order."""
    def cqt(fmin: float, n_bins: int) -> np.ndarray:
        return np.abs(librosa.cqt(audio, sr=sr, hop_length=HOP_LENGTH, fmin=fmin, n_bins=n_bins,
                                  bins_per_octave=BINS_PER_OCTAVE))

    if method == "per_harmonic":
        return [cqt(FMIN * h, N_BINS) for h in HARMONICS]
    lowest = min(HARMONICS)
    shifts = {h: round(math.log2(h / lowest) * BINS_PER_OCTAVE) for h in HARMONICS
              if math.log2(h / lowest).is_integer()}
    shared = cqt(FMIN * lowest, N_BINS + max(shifts.values()))
    return [shared[shifts[h]:shifts[h] + N_BINS] if h in shifts else cqt(FMIN * h, N_BINS) for h in HARMONICS]


def log_normalise(magnitude: np.ndarray) -> np.ndarray:
    """librosa's ``amplitude_to_db(m, ref=np.max, top_db=TOP_DB) / TOP_DB + 1`` computed in place
    on float32 ``magnitude`` (which it overwrites and returns): the same operations in the same
    dtype, so the same bits, without the six full-size temporaries."""
    if magnitude.dtype != np.float32:
        raise ValueError(f"expected float32 magnitudes, got {magnitude.dtype}")
    ref_power = magnitude.max() ** 2
    power = np.square(magnitude, out=magnitude)
    np.maximum(power, AMPLITUDE_FLOOR ** 2, out=power)
    db = np.log10(power, out=power)
    db *= 10.0
    db -= 10.0 * np.log10(np.maximum(AMPLITUDE_FLOOR ** 2, ref_power))
    np.maximum(db, db.max() - TOP_DB, out=db)
    db /= TOP_DB
    db += 1.0
    return db


def frame_times(n_frames: int) -> np.ndarray:
    """(n_frames,) centre time in seconds of each salience frame."""
    return np.arange(n_frames) / SALIENCE_FRAME_RATE


def bin_frequencies() -> np.ndarray:
    """(360,) centre frequency in Hz of each salience bin (20 cents apart from 32.7 Hz)."""
    return FMIN * 2.0 ** (np.arange(N_BINS) / BINS_PER_OCTAVE)
