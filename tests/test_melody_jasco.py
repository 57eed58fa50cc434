"""JASCO's 53-semitone melody condition: grouping, frame-rate conversion, reference agreement."""

from __future__ import annotations

import numpy as np
import pytest

from music.frames import frames_covering
from pipeline.audio import load_audio
from pipeline.stage import create_stage
from stages.loudness import frame_rms_db
from stages.melody import jasco
from stages.melody.constants import (
    BINS_PER_SEMITONE,
    FMIN_MIDI,
    JASCO_LOWEST_MIDI,
    N_BINS,
    SALIENCE_FRAME_RATE,
    SAMPLE_RATE,
    UNVOICED_INDEX,
)
from tests.test_melody_support import JASCO_REFERENCE, synth_melody, weights_dir  # noqa: F401 (fixture)


def salience_with_peaks(midi_per_frame: list[float], peak: float = 0.9) -> np.ndarray:
    """(360, T) salience with a 3-bin peak at each frame's pitch (NaN = no peak)."""
    salience = np.full((N_BINS, len(midi_per_frame)), 0.02, dtype=np.float32)
    for t, midi in enumerate(midi_per_frame):
        if not np.isnan(midi):
            centre = int(round((midi - FMIN_MIDI) * BINS_PER_SEMITONE))
            for offset, value in ((-1, 0.6 * peak), (0, peak), (1, 0.6 * peak)):
                if 0 <= centre + offset < N_BINS:
                    salience[centre + offset, t] = value
    return salience


def test_grouping_lands_on_the_right_semitones():
    # in tune, 20 and 40 cents sharp/flat (the edges of a semitone's 5 bins), and out of range
    midi = [43.2, 45.0, 52.4, 60.0, 59.6, 69.2, 81.0, 95.0, 94.6, 42.0, 97.0, np.nan]
    expected = [0, 2, 9, 17, 17, 26, 38, 52, 52, UNVOICED_INDEX, UNVOICED_INDEX, UNVOICED_INDEX]
    index = jasco.melody_index(jasco.salience_to_semitones(salience_with_peaks(midi)))
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_array_equal(jasco.index_to_midi(index)[:9], np.round(midi[:9]))


def test_threshold_zeroes_weak_salience():
    weak = salience_with_peaks([64.0, 64.0], peak=0.45)
    assert (jasco.melody_index(jasco.salience_to_semitones(weak, threshold=0.5)) == UNVOICED_INDEX).all()
    assert (jasco.melody_index(jasco.salience_to_semitones(weak, threshold=0.4)) == 64 - JASCO_LOWEST_MIDI).all()


def test_one_hot_has_zero_rows_where_unvoiced():
    matrix = jasco.one_hot(np.array([0, -1, 52, 7], dtype=np.int16))
    assert matrix.shape == (4, 53) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix.sum(axis=1), [1, 0, 1, 1])
    assert matrix[2, 52] == 1 and matrix[3, 7] == 1


def test_frame_count_agrees_with_the_other_stages():
    for n_samples in (1, 255, 22050, 22051, 220500, 13_229_999):
        n = frames_covering(n_samples, SAMPLE_RATE, 50.0)
        if n_samples < 300_000:
            assert n == len(frame_rms_db(np.zeros((1, n_samples), np.float32), SAMPLE_RATE, 50.0))
        assert n == int(np.ceil(n_samples / SAMPLE_RATE * 50.0 - 1e-9))


def test_frame_rate_conversion_drifts_less_than_a_frame_over_10_minutes():
    # A note change every 7.3 s for 10 minutes, at exact times; the 50 fps index must switch within
    # one frame of each change time. JASCO's rounded 86 fps would be 45 frames late by the end.
    seconds = 600.0
    n_source = int(seconds * SALIENCE_FRAME_RATE) + 1
    times = np.arange(n_source) / SALIENCE_FRAME_RATE
    change_times = np.arange(7.3, seconds, 7.3)
    midi = np.where(np.searchsorted(change_times, times, side="right") % 2 == 0, 60.0, 67.0)
    semitones = jasco.salience_to_semitones(salience_with_peaks(list(midi)))
    n_out = frames_covering(int(seconds * SAMPLE_RATE), SAMPLE_RATE, 50.0)
    assert n_out == 30_000

    frame_times = jasco.condition_frame_times(n_out, 50.0)
    ideal = np.searchsorted(frame_times, change_times)  # first output frame after each change

    def switch_errors(source_rate: float) -> np.ndarray:
        """Signed error (frames) of each switch against the ideal frame, over the 10 minutes."""
        index = jasco.melody_index(jasco.resample_frames(semitones, n_out, 50.0, source_rate))
        switches = np.flatnonzero(np.diff(index) != 0) + 1  # first frame of each new note
        assert len(switches) == len(change_times)
        return switches - ideal

    errors = switch_errors(SALIENCE_FRAME_RATE)
    drift = errors[-10:].mean() - errors[:10].mean()
    print(f"exact rate: switch errors {errors.min()}..{errors.max()} frames, drift over 10 min {drift:+.2f} frames; "
          f"rounded 86 fps: up to {np.abs(switch_errors(86.0)).max()} frames")
    assert np.abs(errors).max() <= 1 and abs(drift) < 1
    assert np.abs(switch_errors(86.0)).max() > 40  # what JASCO's loader would do


def test_synthetic_melody_audio_lands_on_the_right_semitones(weights_dir):
    notes = [(55, 0.8), (60, 0.8), (67, 0.6), (72, 0.8), (79, 0.6), (64, 0.8)]
    audio, _ = synth_melody(notes, gap=0.2)
    stage = create_stage("melody", {"weights_dir": str(weights_dir)})
    index = stage.extract(audio, SAMPLE_RATE)["melody_index"]
    times = jasco.condition_frame_times(len(index), 50.0)
    start, hits, total = 0.0, 0, 0
    for midi, seconds in notes:
        inner = (times > start + 0.1) & (times < start + seconds - 0.1)  # note interiors
        hits += int(np.sum(index[inner] == midi - JASCO_LOWEST_MIDI))
        total += int(inner.sum())
        gap = (times > start + seconds + 0.08) & (times < start + seconds + 0.12)
        assert (index[gap] == UNVOICED_INDEX).all(), "silence between notes must be unvoiced"
        start += seconds + 0.2
    print(f"synthetic melody: {hits}/{total} note-interior frames on the right semitone")
    assert hits / total >= 0.95


def agreement(index: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(same bin where both are voiced, same voicing) of two (T,) melody indices."""
    voiced, ref_voiced = index >= 0, reference >= 0
    both = voiced & ref_voiced
    return float(np.mean(index[both] == reference[both])), float(np.mean(voiced == ref_voiced))


def test_agreement_with_the_jasco_reference_matrix(weights_dir):
    if not (JASCO_REFERENCE / "salience_1.npy").is_file():
        pytest.skip("JASCO reference not available")
    reference = np.load(JASCO_REFERENCE / "salience_1.npy")
    reference_index = np.where(reference.sum(axis=1) > 0, reference.argmax(axis=1), UNVOICED_INDEX)
    samples, sr = load_audio(JASCO_REFERENCE / "salience_1.wav", sample_rate=SAMPLE_RATE, channels=1)
    stage = create_stage("melody", {"weights_dir": str(weights_dir)})
    salience = stage.salience(samples, sr)
    semitones, index = jasco.jasco_melody(salience, samples.shape[1], sr, 50.0)
    assert index.shape == (500,)
    same_bin, same_voicing = agreement(index, reference_index)
    # As the reference was made: the same steps with the frame rate rounded to 86 fps.
    rounded = jasco.melody_index(jasco.resample_frames(jasco.salience_to_semitones(salience), 500, 50.0, 86.0))
    rounded_bin, rounded_voicing = agreement(rounded, reference_index)
    print(f"JASCO salience_1: exact rate: same bin {same_bin:.1%}, voicing {same_voicing:.1%}; "
          f"86 fps as JASCO: same bin {rounded_bin:.1%}, voicing {rounded_voicing:.1%}")
    assert same_bin >= 0.93 and same_voicing >= 0.91
    assert rounded_bin >= 0.93 and rounded_voicing >= 0.92
