"""The one frame rule (music/frames.py): exact from samples, tolerant from seconds, and equal to
every formula the stages and the sampler used before it had one home."""

from __future__ import annotations

import math

import numpy as np
import pytest

from music.frames import SECONDS_TOLERANCE_FRAMES, frames_covering, frames_for_seconds

SAMPLE_RATES = (16000, 22050, 24000, 32000, 44100, 48000)
#: Latent rates (EnCodec 32 kHz, EnCodec 24 kHz, 25 Hz) and DeepSalience's 22050 / 256.
FRAME_RATES = (50.0, 75.0, 25.0, 22050 / 256)


def _sample_counts(sample_rate: int) -> np.ndarray:
    """Every count of the first 0.2 s, and every count near whole seconds up to 10 minutes."""
    around = np.arange(-64, 65)[None, :] + sample_rate * np.arange(1, 601, 7)[:, None]
    return np.unique(np.concatenate([np.arange(0, sample_rate // 5), around.ravel()]))


@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
@pytest.mark.parametrize("frame_rate", FRAME_RATES)
def test_samples_rule_is_exact_and_equals_the_old_formulas(sample_rate, frame_rate):
    counts = _sample_counts(sample_rate)
    exact = np.array([frames_covering(int(n), sample_rate, frame_rate) for n in counts[::97]])
    # the exact definition: the smallest k with k / fr >= n / sr
    step = counts[::97]
    assert np.all(exact * sample_rate >= step * frame_rate - 1e-9)
    assert np.all((exact - 1) * sample_rate < step * frame_rate)
    new = np.array([frames_covering(int(n), sample_rate, frame_rate) for n in counts])
    # melody, drums, loudness: plain float ceil of n * fr / sr
    assert np.array_equal(new, np.ceil(counts * frame_rate / sample_rate).astype(np.int64))
    # chords: ceil of the duration in seconds times fr, less 1e-6
    assert np.array_equal(new, np.ceil((counts / sample_rate) * frame_rate - 1e-6).astype(np.int64))


def test_seconds_rule_absorbs_float_error_and_nothing_more():
    assert frames_for_seconds(10.0, 50.0) == 500
    assert frames_for_seconds(0.3, 50.0) == 15  # 0.3 * 50 = 15.000000000000002 in floats
    assert frames_for_seconds(10.001, 50.0) == 501  # a twentieth of a frame more is a frame more
    assert frames_for_seconds(0.0, 50.0) == 0
    with pytest.raises(ValueError):
        frames_for_seconds(-1.0, 50.0)
    with pytest.raises(ValueError):
        frames_covering(-1, 44100, 50.0)


@pytest.mark.parametrize("frame_rate", FRAME_RATES)
def test_seconds_rule_equals_the_old_formulas_on_decimal_durations(frame_rate):
    """Prompt and corpus durations are decimals (to 4 places); the sampler rounded, the corpus truth
    used a 1e-9 tolerance: on durations that are whole frames all agree, and otherwise the new rule
    covers the duration (ceil) where rounding could fall short."""
    seconds = np.round(np.arange(0, 60 * 10_000, 37) / 10_000, 4)
    new = np.array([frames_for_seconds(float(s), frame_rate) for s in seconds])
    product = seconds * frame_rate
    truth_rule = np.ceil(product - 1e-9).astype(np.int64)
    differs = new != truth_rule
    # only where the float product lies within (1e-9, 1e-6] above a whole number: float error
    assert np.all(np.abs(product[differs] - np.round(product[differs])) <= SECONDS_TOLERANCE_FRAMES)
    whole = np.abs(product - np.round(product)) <= SECONDS_TOLERANCE_FRAMES
    assert np.array_equal(new[whole], np.round(product[whole]).astype(np.int64))  # the sampler's round
    assert np.all(new / frame_rate >= seconds - SECONDS_TOLERANCE_FRAMES / frame_rate)


def test_frames_and_samples_agree_for_every_stage_at_the_latent_rate():
    """A track's chords and melody frames come from its sample count, never from a rounded duration."""
    for n in (1, 639, 640, 641, 44_099, 44_100, 441_000, 13_229_999):
        assert frames_covering(n, 44100, 50.0) == math.ceil(n * 50 / 44100)
