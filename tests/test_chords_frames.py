"""Timeline -> frame indices: the centre rule, both timeline forms, crops, and the inverse."""

import numpy as np
import pytest

from music.frames import frames_for_seconds
from stages.chords.frames import (
    as_segments,
    frames_to_timeline,
    label_frame_counts,
    timeline_to_frames,
)
from stages.chords.vocab import Vocabulary

VOCAB = Vocabulary.jasco()
FR = 50.0
LABELS = ["C", "G", "Am", "F", "Bb/D", "E7", "N", "F#m7b5"]


def random_changes(rng, n=12, duration=20.0):
    """[(label, start)] with random times (first change after 0 -> leading N)."""
    starts = np.sort(rng.uniform(0.0, duration, n))
    return [(LABELS[rng.integers(len(LABELS))], float(t)) for t in starts]


def brute_force(changes, n_frames, frame_rate=FR, first_frame=0):
    """The definition, one frame at a time: the last change at or before the frame centre."""
    out = []
    for k in range(first_frame, first_frame + n_frames):
        centre = (k + 0.5) / frame_rate
        label = "N"
        for name, start in changes:
            if start <= centre:
                label = name
        out.append(VOCAB.encode(label))
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
def test_centre_rule_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    changes = random_changes(rng)
    frames = timeline_to_frames(changes, 1000, VOCAB, FR)
    assert frames.dtype == np.int16 and frames.shape == (1000,)
    assert np.array_equal(frames, brute_force(changes, 1000))


def test_boundaries_on_frame_edges_and_centres():
    # a change exactly on the edge k/fr starts at frame k; on a centre (k+0.5)/fr it takes frame k too
    frames = timeline_to_frames([("C", 0.0), ("G", 0.2), ("Am", 0.31)], 20, VOCAB, FR)
    c, g, am = VOCAB.encode("C"), VOCAB.encode("G"), VOCAB.encode("Am")
    assert frames[:10].tolist() == [c] * 10 and frames[10:15].tolist() == [g] * 5 and frames[15:].tolist() == [am] * 5


def test_both_timeline_forms_agree():
    changes = [("C", 0.0), ("G", 1.23), ("N", 2.0), ("Am", 2.5)]
    segments = [("C", 0.0, 1.23), ("G", 1.23, 2.0), ("N", 2.0, 2.5), ("Am", 2.5, 4.0)]
    dicts = [{"label": l, "start": s, "end": e} for l, s, e in segments]
    expected = timeline_to_frames(changes, 200, VOCAB, FR)
    assert np.array_equal(timeline_to_frames(segments, 200, VOCAB, FR), expected)
    assert np.array_equal(timeline_to_frames(dicts, 200, VOCAB, FR), expected)
    # segments leave gaps as N; changes run the last chord to the end
    assert timeline_to_frames(segments, 250, VOCAB, FR)[200:].tolist() == [0] * 50
    assert timeline_to_frames(changes, 250, VOCAB, FR)[200:].tolist() == [VOCAB.encode("Am")] * 50
    assert as_segments(changes, end_s=4.0) == segments


def test_leading_time_and_empty_timeline_are_no_chord():
    assert timeline_to_frames([("C", 1.0)], 100, VOCAB, FR)[:50].tolist() == [0] * 50
    assert timeline_to_frames([], 7, VOCAB, FR).tolist() == [0] * 7
    assert timeline_to_frames([("C", 0.0)], 0, VOCAB, FR).shape == (0,)


@pytest.mark.parametrize("seed", range(3))
def test_training_crop_equals_sampler_call_on_shifted_list(seed):
    """What training reads (a crop of the stored frames) is what the sampler builds from a user's
    [(label, start)] list for the same excerpt: no off-by-one frame."""
    rng = np.random.default_rng(100 + seed)
    changes = random_changes(rng, n=20, duration=30.0)
    stored = timeline_to_frames(changes, frames_for_seconds(30.0, FR), VOCAB, FR)
    for first in rng.integers(0, 1000, 10):
        first = int(first)
        crop = stored[first : first + 500]
        assert np.array_equal(timeline_to_frames(changes, len(crop), VOCAB, FR, first_frame=first), crop)
        offset = first / FR
        prior = [label for label, start in changes if start <= offset]
        user = [(prior[-1] if prior else "N", 0.0)] + [(l, s - offset) for l, s in changes if s > offset]
        assert np.array_equal(timeline_to_frames(user, len(crop), VOCAB, FR), crop)


def test_unknown_labels_become_unk_in_frames():
    vocab = Vocabulary.jasco()
    frames = timeline_to_frames([("C", 0.0), ("Csus4", 1.0)], 100, vocab, FR)
    assert set(frames[50:].tolist()) == {vocab.unk_index} and vocab.unknown == {"Csus4": 1}


def test_frames_to_timeline_inverts():
    rng = np.random.default_rng(7)
    changes = random_changes(rng)
    frames = timeline_to_frames(changes, 1000, VOCAB, FR)
    segments = frames_to_timeline(frames, VOCAB, FR)
    assert np.array_equal(timeline_to_frames(segments, 1000, VOCAB, FR), frames)
    assert segments[0][1] == 0.0 and segments[-1][2] == 1000 / FR
    assert frames_to_timeline(np.zeros(0, np.int16), VOCAB, FR) == []


def test_label_frame_counts_use_the_same_rule():
    changes = [("C", 0.0), ("G", 0.2), ("Db", 0.5)]
    counts = label_frame_counts(changes, 40, FR)
    assert counts == {"C": 10, "G": 15, "Db": 15}
    assert label_frame_counts([("C", 0.1, 0.3)], 20, FR) == {"N": 10, "C": 10}


@pytest.mark.parametrize("bad", [[("C",)], [("C", 0.0), ("G", 1.0, 2.0)], [("C", float("nan"))],
                                 [("C", 2.0, 1.0)], [(3, 0.0)], ["C"]])
def test_malformed_timelines_are_value_errors(bad):
    with pytest.raises(ValueError):
        timeline_to_frames(bad, 10, VOCAB, FR)
