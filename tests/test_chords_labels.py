"""Chord labels and vocabularies: normalisation, Harte conversion, JASCO table, UNK, build-vocab."""

import json
import random

import mir_eval
import pytest

from music.chords import label_pitch_classes, normalise_label, parse_chord, root_position, to_harte
from music.vocabulary import CHORD_NO_CHORD, CHORD_UNKNOWN, JASCO_CHORD_VOCAB_SIZE
from stages.chords.vocab import Vocabulary, VocabularyError, build_vocabulary

JASCO = Vocabulary.jasco()
CHORD_LABELS = [label for label in JASCO.labels if label not in (CHORD_NO_CHORD, CHORD_UNKNOWN)]


@pytest.mark.parametrize("raw, canonical", [
    ("Db", "C#"), ("A#m", "Bbm"), ("Gb7", "F#7"), ("Cb", "B"), ("E#m", "Fm"), ("D#maj7", "Ebmaj7"),
    ("Fbb", "Eb"), ("C##m6", "Dm6"),
    ("Cmaj", "C"), ("Cmin", "Cm"), ("C-7", "Cm7"), ("Cmin7", "Cm7"), ("Bhdim7", "Bm7b5"), ("Bø", "Bm7b5"),
    ("C+", "Caug"), ("Cmaj6", "C6"), ("Amin6", "Am6"), ("Co", "Cdim"),
    ("C:min7", "Cm7"), ("Bb:hdim7/b7", "Bbm7b5/Ab"), ("A:7/3", "A7/C#"), ("C:maj/5", "C/G"),
    ("Db/F", "C#/E#"), ("C#/F", "C#/E#"), ("Ab/F#", "Ab/Gb"), ("C/C", "C"), ("C/E", "C/E"), ("C/Fb", "C/E"),
    ("Am/C", "Am/C"), ("Csus4", "Csus4"), ("Dbsus4/Ab", "C#sus4/Ab"),
    ("N", "N"), ("", "N"), ("NC", "N"), (" N.C. ", "N"), ("X", "UNK"), ("UNK", "UNK"),
    ("H7", "H7"), ("C/?", "C/?"),
])
def test_normalise_label(raw, canonical):
    assert normalise_label(raw) == canonical
    assert normalise_label(canonical) == canonical  # idempotent


def test_every_jasco_label_is_already_canonical():
    for label in JASCO.labels:
        assert normalise_label(label) == label


def test_root_position():
    assert root_position("Am/C") == "Am"
    assert root_position("Db/F") == "C#"
    assert root_position("C") is None and root_position("N") is None


@pytest.mark.parametrize("label, harte", [
    ("Bbm7b5/Ab", "Bb:hdim7/b7"), ("C", "C:maj"), ("Am", "A:min"), ("F#6", "F#:maj6"), ("Ebm6", "Eb:min6"),
    ("C#/E#", "C#:maj/3"), ("Ab/Gb", "Ab:maj/b7"), ("D/E", "D:maj/2"), ("A7/C#", "A:7/3"),
    ("N", "N"), ("UNK", "X"), ("Csus4", "X"), ("garbage", "X"),
])
def test_to_harte(label, harte):
    assert to_harte(label) == harte


def test_harte_of_every_vocabulary_label_has_the_same_pitch_classes():
    """mir_eval reads each converted label as exactly the notes the vocabulary label means."""
    for label in CHORD_LABELS:
        root, bitmap, bass = mir_eval.chord.encode(to_harte(label))
        notes = {(root + i) % 12 for i in range(12) if bitmap[i]} | {(root + bass) % 12}
        assert notes == set(label_pitch_classes(label)), label
        assert root == parse_chord(label).root


def test_jasco_vocabulary_layout_and_round_trip():
    assert len(JASCO) == JASCO_CHORD_VOCAB_SIZE == 194
    assert JASCO.encode("N") == 0 and JASCO.encode("UNK") == 193 and JASCO.unk_index == 193
    for index, label in enumerate(JASCO.labels):
        assert JASCO.encode(label) == index and JASCO.decode(index) == label
    with pytest.raises(IndexError):
        JASCO.decode(194)


def test_shipped_vocabulary_matches_jasco_reference(reference_dir):
    reference = json.loads((reference_dir / "jasco" / "chord_to_index_mapping.json").read_text())
    assert JASCO.mapping() == reference


def test_unknown_labels_map_to_unk_and_are_counted():
    vocab = Vocabulary.jasco()
    assert vocab.encode("Csus4") == vocab.unk_index
    assert vocab.encode("Csus4") == vocab.unk_index
    assert vocab.encode("!!not a chord") == vocab.unk_index
    assert vocab.encode("Cdim7") == vocab.unk_index
    assert vocab.unknown == {"Csus4": 2, "!!not a chord": 1, "Cdim7": 1}
    # enharmonic spellings share an index and are not unknown
    assert vocab.encode("Db") == vocab.encode("C#") and vocab.encode("Gbm7") == vocab.encode("F#m7")
    assert vocab.encode("Db/F") == vocab.mapping()["C#/E#"]
    assert sum(vocab.unknown.values()) == 4
    vocab.reset_counts()
    assert not vocab.unknown


def test_slash_bass_missing_from_the_table_falls_back_to_root_position():
    vocab = Vocabulary.jasco()
    assert vocab.encode("Am/C") == vocab.encode("Am")
    assert vocab.bass_dropped == {"Am/C": 1} and not vocab.unknown
    strict = Vocabulary.jasco(slash_fallback=False)
    assert strict.encode("Am/C") == strict.unk_index and strict.unknown == {"Am/C": 1}


def test_vocabulary_json_round_trip(tmp_path):
    path = JASCO.write(tmp_path / "v.json")
    again = Vocabulary.from_json(path)
    assert again.mapping() == JASCO.mapping() and again.digest == JASCO.digest
    assert Vocabulary.load("jasco").digest == JASCO.digest


@pytest.mark.parametrize("content, reason", [
    ('{"N": 0, "C": 3, "UNK": 1}', "without gaps"),
    ('{"C": 0, "N": 1, "UNK": 2}', "'N' must have index 0"),
    ('{"N": 0, "UNK": 1, "C": 2}', "'UNK' must have the last index"),
    ('["N", "UNK"]', "expected a JSON object"),
    ("{not json", "not a JSON vocabulary"),
    ('{"N": 0, "C": "1", "UNK": 2}', "integer index"),
])
def test_malformed_vocabulary_files_are_clear_errors(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(VocabularyError, match=reason) as info:
        Vocabulary.from_json(path)
    assert str(path) in str(info.value)


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(VocabularyError, match="not found"):
        Vocabulary.load(str(tmp_path / "none.json"))


def test_build_vocabulary_is_deterministic_and_reserves_n_and_unk():
    counts = [("G", 50), ("C", 50), ("Am", 80), ("Db", 10), ("C#", 5), ("N", 999), ("UNK", 7), ("F", 3)]
    built = build_vocabulary(counts)
    # by frequency, ties by name; Db and C# are one chord (15 frames)
    assert built.labels == ["N", "Am", "C", "G", "C#", "F", "UNK"]
    for _ in range(5):
        shuffled = counts[:]
        random.Random(_).shuffle(shuffled)
        assert build_vocabulary(dict(shuffled)).to_json() == built.to_json()
    assert build_vocabulary(counts, min_count=10).labels == ["N", "Am", "C", "G", "C#", "UNK"]
    assert build_vocabulary(counts, max_size=4).labels == ["N", "Am", "C", "UNK"]
    assert build_vocabulary([]).labels == ["N", "UNK"]
    with pytest.raises(VocabularyError):
        build_vocabulary(counts, max_size=1)
