"""Boundary refinement: moves a change onto the onset of the new chord, leaves what it cannot judge."""

import numpy as np
import pytest

from pipeline.config import ConfigError
from stages.chords.refine import RefineParams, refine_changes
from stages.chords.stage import CHORDINO_SAMPLE_RATE
from tests.test_chords_stage import progression_audio

SR = CHORDINO_SAMPLE_RATE  # refinement reads what Chordino reads: the stage's 11025 Hz mono
PARAMS = RefineParams()
TWO_CHORDS = [("C", 1.3), ("Am", 1.2)]  # the change is at 1.3 s


def _segments(change_s, first="C", second="Am", end=2.5):
    return [(first, 0.0, change_s), (second, change_s, end)]


@pytest.mark.parametrize("chordino_time", [1.3 - 0.1, 1.3 - 0.067, 1.3 - 0.033, 1.3 + 0.03, 1.3 + 0.067, 1.3 + 0.11])
def test_change_moves_to_the_onset(chordino_time):
    audio = progression_audio(TWO_CHORDS, SR)
    refined = refine_changes(audio, SR, _segments(chordino_time), PARAMS)
    assert refined[0][2] == refined[1][1]
    assert abs(refined[1][1] - 1.3) < 0.01, refined


@pytest.mark.parametrize("sr, params", [
    (44100, RefineParams(window=2048, hop=128)),  # the same 46 ms windows at the full rate
    (22050, RefineParams(window=1024, hop=64)),
])
def test_other_rates_with_scaled_windows_find_the_onset(sr, params):
    audio = progression_audio(TWO_CHORDS, sr)
    for chordino_time in (1.3 - 0.067, 1.3 + 0.067):  # one 67 ms Chordino step either side
        refined = refine_changes(audio, sr, _segments(chordino_time), params)
        assert abs(refined[1][1] - 1.3) < 0.01, refined


def test_moves_at_most_radius():
    audio = progression_audio(TWO_CHORDS, SR)
    for chordino_time in (1.0, 1.6):  # the onset at 1.3 is out of reach
        refined = refine_changes(audio, SR, _segments(chordino_time), PARAMS)
        assert abs(refined[1][1] - chordino_time) <= PARAMS.radius_s + 1e-9


@pytest.mark.parametrize("segments", [
    _segments(1.25, "C", "C/E"),  # same pitch classes: nothing to look for
    _segments(1.25, "N", "Am"),
    _segments(1.25, "C", "UNK"),
    _segments(1.25, "C", "Csus4"),  # a quality the vocabulary does not know
])
def test_changes_it_cannot_judge_are_kept(segments):
    audio = progression_audio(TWO_CHORDS, SR)
    assert refine_changes(audio, SR, segments, PARAMS) == segments


def test_disabled_silent_or_single_segment_is_unchanged():
    audio = progression_audio(TWO_CHORDS, SR)
    segments = _segments(1.25)
    assert refine_changes(audio, SR, segments, RefineParams(enabled=False)) == segments
    assert refine_changes(np.zeros_like(audio), SR, segments, PARAMS) == segments
    assert refine_changes(audio, SR, segments[:1], PARAMS) == segments[:1]


def test_neighbouring_segments_never_collapse():
    audio = progression_audio([("C", 1.3), ("Am", 0.05), ("F", 1.0)], SR)
    segments = [("C", 0.0, 1.3), ("Am", 1.3, 1.33), ("F", 1.33, 2.35)]
    refined = refine_changes(audio, SR, segments, PARAMS)
    assert all(end > start for _, start, end in refined)
    assert [s[0] for s in refined] == ["C", "Am", "F"]


def test_bad_params():
    with pytest.raises(ConfigError):
        RefineParams(window=64)
