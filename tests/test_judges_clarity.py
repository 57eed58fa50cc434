"""Harmonic clarity (model/evaluation/judges/clarity.py): stable partials count, noise and smear do not."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from model.evaluation.judges.clarity import ClarityConfig, HarmonicClarity
from pipeline.config import ConfigError

SR = 22050
SECONDS = 3.0


def _chord(seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    tone = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate([261.63, 329.63, 392.0, 523.25]))
    return (0.2 * tone)[None].astype(np.float32)


def _smeared(audio: np.ndarray, seed: int = 0) -> np.ndarray:
    """The clip's STFT magnitude blurred over time and frequency, with random phase."""
    rng = np.random.default_rng(seed)
    _, _, spectrum = scipy.signal.stft(audio[0], SR, nperseg=1024)
    from scipy.ndimage import uniform_filter

    blurred = uniform_filter(np.abs(spectrum), size=(9, 9))
    _, out = scipy.signal.istft(blurred * np.exp(2j * np.pi * rng.random(blurred.shape)), SR, nperseg=1024)
    return out[None].astype(np.float32)


def test_a_held_chord_is_tonal_and_noise_or_smear_is_not():
    judge = HarmonicClarity()
    chord = _chord()
    noise = np.random.default_rng(1).normal(scale=0.1, size=chord.shape).astype(np.float32)
    assert judge.hear(chord, SR) > 0.9
    assert judge.hear(noise, SR) < 0.01
    assert judge.hear(_smeared(chord), SR) < 0.05
    # noise 10 dB under the chord lowers the share by about the noise's share of the energy
    assert 0.8 < judge.hear(chord + 0.3 * noise, SR) < judge.hear(chord, SR)


def test_silence_is_nan_and_the_rate_and_channels_do_not_matter():
    judge = HarmonicClarity()
    assert np.isnan(judge.hear(np.zeros((2, SR), np.float32), SR))
    from pipeline.audio import resample

    chord = _chord()
    stereo_44k = np.repeat(resample(chord, SR, 44100), 2, axis=0)
    assert judge.hear(stereo_44k, 44100) == pytest.approx(judge.hear(chord, SR), abs=0.02)


def test_short_partials_are_not_stable():
    """Tone bursts shorter than stable_frames hops carry energy but no stable partial."""
    config = ClarityConfig()
    burst = int(config.hop * (config.stable_frames - 2))
    audio = _chord()[0].copy()
    gate = np.zeros_like(audio)
    for start in range(0, len(audio), 8 * burst):
        gate[start:start + burst] = 1.0
    assert HarmonicClarity(config).hear((audio * gate)[None], SR) < 0.5 * HarmonicClarity(config).hear(_chord(), SR)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError):
        ClarityConfig(fmin=6000.0, fmax=5000.0)
    with pytest.raises(ConfigError):
        ClarityConfig(hop=8192)
