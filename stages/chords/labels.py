"""Chord label normalisation and the JASCO-label -> Harte conversion (for mir_eval).

Builds on :mod:`pipeline.corpus.chords` (the vocabulary's speller). That module parses exactly the
vocabulary's own spellings; this one adds what real inputs contain:

* enharmonic roots and basses (``Db``, ``A#``, ``Cb``, ``E#``, double accidentals) -> the
  vocabulary's spelling (``C#``, ``Bb``, ``B``, ``F``);
* quality synonyms (``maj``, ``min``, ``-``, ``hdim7``, ``ø``, ``+``, ``maj6``, ...) and Harte syntax
  (``C:min7/b3``) -> the vocabulary's suffixes;
* slash chords: a bass equal to the root is dropped, an allowed bass is re-spelled by its scale
  degree (``Db/F`` -> ``C#/E#``); a bass the vocabulary has no family for is kept, spelled with
  :data:`ROOT_NAMES`, and left to :class:`stages.chords.vocab.Vocabulary` to resolve.

``normalise_label`` is idempotent and never raises: a label it cannot read comes back stripped and
unchanged, and any vocabulary then maps it to ``UNK`` (counted).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pipeline.constants import CHORD_NO_CHORD, CHORD_UNKNOWN
from pipeline.corpus.chords import QUALITIES, ROOT_NAMES, SLASH_BASS_INTERVALS, chord_label

#: Spellings that mean "no chord" (Chordino, Harte, lead sheets).
NO_CHORD_SPELLINGS = frozenset({"", "N", "NC", "N.C.", "N.C"})
#: Spellings that mean "a chord we cannot name" (Harte's ``X``, JASCO's ``UNK``).
UNKNOWN_SPELLINGS = frozenset({"X", "UNK"})

# Quality spellings seen in the wild -> the vocabulary's quality name (a key of QUALITIES).
_QUALITY_SYNONYMS: dict[str, str] = {
    "": "maj", "maj": "maj", "M": "maj", "major": "maj",
    "m": "min", "min": "min", "-": "min", "minor": "min",
    "dim": "dim", "o": "dim", "°": "dim",
    "aug": "aug", "+": "aug",
    "7": "7", "dom7": "7",
    "maj7": "maj7", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7",
    "m7": "m7", "min7": "m7", "-7": "m7",
    "m7b5": "m7b5", "hdim7": "m7b5", "hdim": "m7b5", "ø": "m7b5", "ø7": "m7b5", "min7b5": "m7b5", "-7b5": "m7b5",
    "6": "6", "maj6": "6", "M6": "6",
    "m6": "m6", "min6": "m6", "-6": "m6",
}

#: Harte shorthand of each vocabulary quality.
HARTE_QUALITIES: dict[str, str] = {
    "maj": "maj", "min": "min", "dim": "dim", "aug": "aug", "7": "7", "maj7": "maj7",
    "m7": "min7", "m7b5": "hdim7", "6": "maj6", "m6": "min6",
}

# Harte bass degree of each interval (semitones above the root).
_HARTE_DEGREES = ("1", "b2", "2", "b3", "3", "4", "b5", "5", "b6", "6", "b7", "7")
_DEGREE_SEMITONES = {1: 0, 2: 2, 3: 4, 4: 5, 5: 7, 6: 9, 7: 11, 9: 14, 11: 17, 13: 21}
_LETTER_PCS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NOTE_RE = re.compile(r"^([A-G])((?:#|b|♯|♭)*)")
_DEGREE_RE = re.compile(r"^([#b]*)(\d+)$")


class ParsedChord(NamedTuple):
    """A chord read from any spelling: root and bass as pitch classes (bass None = root position).

    ``quality`` is a key of :data:`QUALITIES` when the vocabulary knows the quality, otherwise the
    suffix as written (e.g. ``"sus4"``), with ``known`` False.
    """

    root: int
    quality: str
    bass: int | None
    known: bool


def _note(text: str) -> tuple[int, str] | None:
    """Pitch class of the note name at the start of ``text`` and the rest of the text."""
    match = _NOTE_RE.match(text)
    if not match:
        return None
    accidentals = match.group(2).replace("♯", "#").replace("♭", "b")
    offset = accidentals.count("#") - accidentals.count("b")
    return (_LETTER_PCS[match.group(1)] + offset) % 12, text[match.end():]


def _bass(text: str, root: int) -> int | None:
    """A slash bass given as a note name (``E``, ``Gb``) or a Harte degree (``3``, ``b7``)."""
    note = _note(text)
    if note is not None and note[1] == "":
        return note[0]
    degree = _DEGREE_RE.match(text)
    if degree and int(degree.group(2)) in _DEGREE_SEMITONES:
        offset = degree.group(1).count("#") - degree.group(1).count("b")
        return (root + _DEGREE_SEMITONES[int(degree.group(2))] + offset) % 12
    return None


def parse_chord(label: str) -> ParsedChord | None:
    """Read a chord from a vocabulary, Chordino, lead-sheet or Harte spelling; None if unreadable
    (and for no-chord / unknown labels)."""
    text = label.strip()
    if text in NO_CHORD_SPELLINGS or text in UNKNOWN_SPELLINGS:
        return None
    head, slash, bass_text = text.partition("/")
    note = _note(head)
    if note is None:
        return None
    root, suffix = note
    if suffix.startswith(":"):  # Harte: C:min7, C:(3,5) is not supported (-> unreadable)
        suffix = suffix[1:]
    suffix = suffix.strip("()")
    bass = None
    if slash:
        bass = _bass(bass_text.strip(), root)
        if bass is None:
            return None
        if bass == root:
            bass = None
    quality = _QUALITY_SYNONYMS.get(suffix)
    if quality is None:
        return ParsedChord(root, suffix, bass, False) if re.fullmatch(r"[\w#+°ø-]+", suffix) else None
    return ParsedChord(root, quality, bass, True)


def spell_chord(chord: ParsedChord) -> str:
    """The canonical label of a parsed chord (the vocabulary's spelling where it has one)."""
    if chord.known:
        allowed = SLASH_BASS_INTERVALS.get(chord.quality, ())
        if chord.bass is None or (chord.bass - chord.root) % 12 in allowed:
            return chord_label(chord.root, chord.quality, chord.bass)
        head = ROOT_NAMES[chord.root] + QUALITIES[chord.quality][0]
    else:
        head = ROOT_NAMES[chord.root] + chord.quality
    return head if chord.bass is None else f"{head}/{ROOT_NAMES[chord.bass]}"


def normalise_label(label: str) -> str:
    """Canonical spelling of a chord label: ``N`` / ``UNK`` for no-chord / unknown spellings,
    the vocabulary's spelling for every chord it can read, else the stripped input."""
    text = label.strip()
    if text in NO_CHORD_SPELLINGS:
        return CHORD_NO_CHORD
    if text in UNKNOWN_SPELLINGS:
        return CHORD_UNKNOWN
    chord = parse_chord(text)
    return text if chord is None else spell_chord(chord)


def root_position(label: str) -> str | None:
    """``label`` without its slash bass (``Am/C`` -> ``Am``), or None if it has none or is unreadable."""
    chord = parse_chord(label)
    if chord is None or chord.bass is None:
        return None
    return spell_chord(chord._replace(bass=None))


def to_harte(label: str) -> str:
    """Harte syntax for mir_eval: ``Bbm7b5/Ab`` -> ``Bb:hdim7/b7``, ``N`` -> ``N``; ``UNK``, a quality
    outside the vocabulary or an unreadable label -> ``X`` (mir_eval's "unknown chord")."""
    text = label.strip()
    if text in NO_CHORD_SPELLINGS:
        return "N"
    chord = parse_chord(text)
    if chord is None or not chord.known:
        return "X"
    harte = f"{ROOT_NAMES[chord.root]}:{HARTE_QUALITIES[chord.quality]}"
    if chord.bass is not None:
        harte += "/" + _HARTE_DEGREES[(chord.bass - chord.root) % 12]
    return harte
