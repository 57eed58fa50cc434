"""One chord type and one parser (music/chords.py) for the corpus, the stages and the model."""

from __future__ import annotations

import pytest

from music.chords import Chord, ChordError, all_vocabulary_chords, parse_chord, parse_label, spell_chord
from music.vocabulary import CHORD_NO_CHORD, CHORD_UNKNOWN, JASCO_CHORD_VOCAB_SIZE, load_vocabulary


def test_every_vocabulary_label_parses_back_to_itself():
    labels = [label for label in load_vocabulary() if label not in (CHORD_NO_CHORD, CHORD_UNKNOWN)]
    assert len(labels) == JASCO_CHORD_VOCAB_SIZE - 2
    for label in labels:
        chord = parse_label(label)
        assert isinstance(chord, Chord) and chord.known and chord.label == label
        assert parse_chord(label) == chord and spell_chord(chord) == label
    assert {chord.label for chord in all_vocabulary_chords()} == set(labels)


def test_the_strict_reading_takes_every_spelling_of_a_vocabulary_quality():
    assert parse_label("Db") == Chord(1, "maj") == parse_label("C#:maj")
    assert parse_label("Bbm7b5/Ab") == parse_label("A#:hdim7/b7") == Chord(10, "m7b5", 8)
    assert parse_label("C/C") == Chord(0, "maj")  # a bass equal to the root is root position


@pytest.mark.parametrize("label", [CHORD_NO_CHORD, CHORD_UNKNOWN, "Csus4", "H7", "", "C/xyz"])
def test_the_strict_reading_refuses_what_the_vocabulary_cannot_hold(label):
    with pytest.raises(ChordError):
        parse_label(label)


def test_the_permissive_reading_keeps_unknown_qualities_and_transposes():
    chord = parse_chord("Csus4/G")
    assert chord == Chord(0, "sus4", 7) and not chord.known
    assert parse_chord("N") is None and parse_chord("X") is None
    assert parse_label("Am/C").transposed(2) == Chord(11, "min", 2)
