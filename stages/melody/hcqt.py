"""The harmonic constant-Q transform (HCQT) that DeepSalience takes as input.

One CQT per harmonic h (fmin = 32.7 Hz x h, 360 bins at 60 per octave, hop 256 at 22050 Hz), all
cropped to the shortest, then log-magnitude scaled to [0, 1] against the maximum over the whole
track and all harmonics, exactly as the original ``compute_hcqt``.
"""

from __future__ import annotations

import warnings

import numpy as np

from stages.melody.constants import (
    BINS_PER_OCTAVE,
    FMIN,
    HARMONICS,
    HOP_LENGTH,
    N_BINS,
    SALIENCE_FRAME_RATE,
    SAMPLE_RATE,
    TOP_DB,
)

#: Shorter clips are padded with silence to this many samples before the CQT.
MIN_SAMPLES: int = HOP_LENGTH


def compute_hcqt(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Log-magnitude HCQT of a mono signal.

    Args:
        audio: (n_samples,) float mono audio at ``sr`` (must be 22050 Hz, the model's rate).
    Returns:
        (6, 360, n_frames) float32 in [0, 1], n_frames = 1 + n_samples // 256 (frame k centred at
        k * 256 / 22050 s).
    """
    from pipeline.numba_cache import import_librosa

    librosa = import_librosa()  # heavy import, only where the transform runs

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
        magnitudes = [
            np.abs(librosa.cqt(audio, sr=sr, hop_length=HOP_LENGTH, fmin=FMIN * h, n_bins=N_BINS,
                               bins_per_octave=BINS_PER_OCTAVE))
            for h in HARMONICS
        ]
    n_frames = min([n_frames] + [m.shape[1] for m in magnitudes])
    stacked = np.stack([m[:, :n_frames] for m in magnitudes])
    log_hcqt = librosa.amplitude_to_db(stacked, ref=np.max, top_db=TOP_DB) / TOP_DB + 1.0
    return log_hcqt.astype(np.float32)


def frame_times(n_frames: int) -> np.ndarray:
    """(n_frames,) centre time in seconds of each salience frame."""
    return np.arange(n_frames) / SALIENCE_FRAME_RATE


def bin_frequencies() -> np.ndarray:
    """(360,) centre frequency in Hz of each salience bin (20 cents apart from 32.7 Hz)."""
    return FMIN * 2.0 ** (np.arange(N_BINS) / BINS_PER_OCTAVE)
