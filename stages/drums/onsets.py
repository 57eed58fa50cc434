"""Onset strength and onset times of a drum stem (librosa spectral flux on a mel spectrogram)."""

from __future__ import annotations

import warnings

import numpy as np

from music.frames import frames_covering
from pipeline.numba_cache import import_librosa
from stages.drums.config import OnsetConfig
from stages.drums.constants import DETECTION_HOP_S

librosa = import_librosa()


def _strength(mono: np.ndarray, sr: int, hop: int, config: OnsetConfig) -> np.ndarray:
    with warnings.catch_warnings():  # very short clips: librosa warns that n_fft exceeds the input
        warnings.simplefilter("ignore", UserWarning)
        return librosa.onset.onset_strength(y=mono, sr=sr, hop_length=hop, n_fft=config.n_fft(sr),
                                            n_mels=config.n_mels, center=True)


def onset_envelope(stem: np.ndarray, sr: int, frame_rate: float, config: OnsetConfig) -> np.ndarray:
    """Onset strength of ``stem`` (C, N) at ``frame_rate`` -> (ceil(N * frame_rate / sr),) float32.

    Frame k describes the spectral increase at time k / frame_rate (librosa centres its frames), so
    it lines up with every other feature at the latent frame rate. ``sr / frame_rate`` must be an
    integer (checked by :class:`~stages.drums.config.DrumsConfig`).
    """
    n_frames = frames_covering(stem.shape[1], sr, frame_rate)
    if n_frames == 0:
        return np.zeros(0, dtype=np.float32)
    envelope = _strength(stem.mean(axis=0), sr, int(round(sr / frame_rate)), config)
    envelope = envelope[:n_frames]
    return np.pad(envelope, (0, n_frames - envelope.shape[0])).astype(np.float32)


def detect_onsets(stem: np.ndarray, sr: int, config: OnsetConfig) -> np.ndarray:
    """Onset times (seconds) of ``stem`` (C, N), peak-picked on an envelope with an 8 ms hop."""
    if stem.shape[1] == 0 or not np.any(stem):
        return np.zeros(0)
    hop = max(1, int(round(sr * DETECTION_HOP_S)))
    envelope = _strength(stem.mean(axis=0), sr, hop, config)
    return librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=hop, units="time",
                                      delta=config.delta)
