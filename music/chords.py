"""Chords: one type, one parser, the vocabulary's speller and Harte conversion.

Labels are JASCO's: roots spelled C C# D Eb E F F# G Ab A Bb B, qualities from :data:`QUALITIES`,
and a slash bass spelled as the interval above the root (``C#/E#``, ``Ab/Gb``), so
:func:`chord_label` spells from pitch classes and needs no lookup table. :func:`parse_chord` reads
what real inputs contain besides (Chordino, lead sheets, Harte):

* enharmonic roots and basses (``Db``, ``A#``, ``Cb``, ``E#``, double accidentals);
* quality synonyms (``maj``, ``min``, ``-``, ``hdim7``, ``ø``, ``+``, ``maj6``, ...) and Harte syntax
  (``C:min7/b3``);
* slash chords: a bass equal to the root is dropped; a bass the vocabulary has no family for is
  kept, spelled with :data:`ROOT_NAMES`, and left to the stage's vocabulary to resolve.

``normalise_label`` is idempotent and never raises: a label it cannot read comes back stripped and
unchanged, and any vocabulary then maps it to ``UNK`` (counted).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from music.vocabulary import CHORD_NO_CHORD, CHORD_UNKNOWN

#: Root spellings used by the vocabulary, indexed by pitch class.
ROOT_NAMES: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

#: Chord qualities of the vocabulary: name -> (label suffix, intervals above the root).
QUALITIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "maj": ("", (0, 4, 7)),
    "min": ("m", (0, 3, 7)),
    "dim": ("dim", (0, 3, 6)),
    "aug": ("aug", (0, 4, 8)),
    "7": ("7", (0, 4, 7, 10)),
    "maj7": ("maj7", (0, 4, 7, 11)),
    "m7": ("m7", (0, 3, 7, 10)),
    "m7b5": ("m7b5", (0, 3, 6, 10)),
    "6": ("6", (0, 4, 7, 9)),
    "m6": ("m6", (0, 3, 7, 9)),
}

#: Slash chords that the vocabulary contains: quality -> bass intervals above the root.
SLASH_BASS_INTERVALS: dict[str, tuple[int, ...]] = {"maj": (2, 4, 7, 10), "7": (4,), "m7b5": (10,)}

# Scale-degree number (1-based) of each slash interval, used to pick the bass letter.
_INTERVAL_DEGREE = {2: 2, 4: 3, 7: 5, 10: 7}
_LETTERS = "CDEFGAB"
_LETTER_PCS = (0, 2, 4, 5, 7, 9, 11)  # pitch class of each letter of _LETTERS
_ACCIDENTALS = {-1: "b", 0: "", 1: "#"}


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
_NOTE_RE = re.compile(r"^([A-G])((?:#|b|♯|♭)*)")
_DEGREE_RE = re.compile(r"^([#b]*)(\d+)$")


class ChordError(ValueError):
    """A chord cannot be written in (or read from) the JASCO vocabulary."""


class Chord(NamedTuple):
    """A chord as pitch classes: root 0-11, quality, bass (None = root position).

    ``quality`` is a key of :data:`QUALITIES` when the vocabulary knows it (``known``), otherwise the
    suffix as written (e.g. ``"sus4"``).
    """

    root: int
    quality: str
    bass: int | None = None

    @property
    def known(self) -> bool:
        return self.quality in QUALITIES

    def pitch_classes(self) -> tuple[int, ...]:
        """Sorted pitch classes sounding in the chord (bass included); a known quality only."""
        pcs = {(self.root + i) % 12 for i in QUALITIES[self.quality][1]}
        if self.bass is not None:
            pcs.add(self.bass)
        return tuple(sorted(pcs))

    def transposed(self, semitones: int) -> "Chord":
        bass = None if self.bass is None else (self.bass + semitones) % 12
        return Chord((self.root + semitones) % 12, self.quality, bass)

    @property
    def label(self) -> str:
        """The vocabulary label; raises :class:`ChordError` if the vocabulary lacks the chord."""
        return chord_label(self.root, self.quality, self.bass)


def _spell_interval(root: int, interval: int) -> str:
    """Spell the note ``interval`` semitones above ``root`` with the letter of its scale degree."""
    root_letter = _LETTERS.index(ROOT_NAMES[root][0])
    letter_index = (root_letter + _INTERVAL_DEGREE[interval] - 1) % 7
    offset = ((root + interval - _LETTER_PCS[letter_index]) + 6) % 12 - 6
    if offset not in _ACCIDENTALS:
        raise ChordError(f"cannot spell interval {interval} above {ROOT_NAMES[root]}")
    return _LETTERS[letter_index] + _ACCIDENTALS[offset]


def chord_label(root: int, quality: str, bass: int | None = None) -> str:
    """The vocabulary label of a chord; raises :class:`ChordError` if the vocabulary lacks it."""
    if quality not in QUALITIES:
        raise ChordError(f"unknown chord quality {quality!r}")
    root %= 12
    label = ROOT_NAMES[root] + QUALITIES[quality][0]
    if bass is not None and bass % 12 != root:
        interval = (bass - root) % 12
        if interval not in SLASH_BASS_INTERVALS.get(quality, ()):
            raise ChordError(f"{label} over bass {ROOT_NAMES[bass % 12]} is not in the JASCO vocabulary")
        label += "/" + _spell_interval(root, interval)
    return label


def vocabulary_chord(root: int, quality: str, bass: int | None = None) -> Chord:
    """Closest representable chord: a slash bass the vocabulary lacks is dropped (root position)."""
    root %= 12
    if bass is not None:
        bass %= 12
        if bass == root or (bass - root) % 12 not in SLASH_BASS_INTERVALS.get(quality, ()):
            bass = None
    return Chord(root, quality, bass)


def all_vocabulary_chords() -> list[Chord]:
    """Every chord that :func:`chord_label` can spell (root position and allowed slash chords)."""
    chords = [Chord(r, q) for q in QUALITIES for r in range(12)]
    chords += [
        Chord(r, q, (r + i) % 12) for q, intervals in SLASH_BASS_INTERVALS.items() for i in intervals for r in range(12)
    ]
    return chords


def _note(text: str) -> tuple[int, str] | None:
    """Pitch class of the note name at the start of ``text`` and the rest of the text."""
    match = _NOTE_RE.match(text)
    if not match:
        return None
    accidentals = match.group(2).replace("♯", "#").replace("♭", "b")
    offset = accidentals.count("#") - accidentals.count("b")
    return (_LETTER_PCS[_LETTERS.index(match.group(1))] + offset) % 12, text[match.end():]


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


def parse_chord(label: str) -> Chord | None:
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
        return Chord(root, suffix, bass) if re.fullmatch(r"[\w#+°ø-]+", suffix) else None
    return Chord(root, quality, bass)


def spell_chord(chord: Chord) -> str:
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


def parse_label(label: str) -> Chord:
    """The chord of a label in a vocabulary quality (any spelling :func:`parse_chord` reads); raises
    :class:`ChordError` for ``N``, ``UNK``, an unreadable label or a quality outside the vocabulary."""
    chord = parse_chord(label)
    if chord is None or not chord.known:
        raise ChordError(f"not a chord label of the vocabulary: {label!r}")
    return chord


def label_pitch_classes(label: str) -> tuple[int, ...]:
    """Pitch classes of a vocabulary label; empty for ``N`` and ``UNK``."""
    if label in (CHORD_NO_CHORD, CHORD_UNKNOWN):
        return ()
    return parse_label(label).pitch_classes()
