"""Chord symbols in JASCO's vocabulary: spelling, parsing and matching pitch content to a label.

The vocabulary (``pipeline/resources/jasco_chord_to_index.json``) holds 192 chord labels plus
``N`` and ``UNK``: 12 roots x 10 qualities in root position, and six slash-chord families
(major triad over its 2nd, 3rd, 5th or minor 7th; dominant 7th over its 3rd; half-diminished
7th over its minor 7th). Roots are spelled C C# D Eb E F F# G Ab A Bb B and a slash bass is
spelled as the interval above the root (``C#/E#``, ``Ab/Gb``), so :func:`chord_label` spells
from pitch classes and never needs a lookup table.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import NamedTuple

import numpy as np

from pipeline.constants import CHORD_NO_CHORD, CHORD_UNKNOWN, JASCO_CHORD_VOCAB_SIZE

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
_LETTER_PCS = (0, 2, 4, 5, 7, 9, 11)
_ACCIDENTALS = {-1: "b", 0: "", 1: "#"}
_NOTE_RE = re.compile(r"^([A-G])([#b]?)")
_SUFFIX_TO_QUALITY = {suffix: name for name, (suffix, _) in QUALITIES.items()}


class ChordError(ValueError):
    """A chord cannot be written in (or read from) the JASCO vocabulary."""


class Chord(NamedTuple):
    """A chord as pitch classes: root 0-11, quality (a key of :data:`QUALITIES`), bass or None."""

    root: int
    quality: str
    bass: int | None = None

    def pitch_classes(self) -> tuple[int, ...]:
        """Sorted pitch classes sounding in the chord (bass included)."""
        pcs = {(self.root + i) % 12 for i in QUALITIES[self.quality][1]}
        if self.bass is not None:
            pcs.add(self.bass)
        return tuple(sorted(pcs))

    def transposed(self, semitones: int) -> "Chord":
        bass = None if self.bass is None else (self.bass + semitones) % 12
        return Chord((self.root + semitones) % 12, self.quality, bass)

    @property
    def label(self) -> str:
        return chord_label(self.root, self.quality, self.bass)


@functools.lru_cache(maxsize=1)
def load_vocabulary() -> dict[str, int]:
    """JASCO's chord label -> index mapping shipped with the package (194 entries)."""
    text = resources.files("pipeline").joinpath("resources/jasco_chord_to_index.json").read_text()
    vocab = json.loads(text)
    if len(vocab) != JASCO_CHORD_VOCAB_SIZE:
        raise ChordError(f"jasco_chord_to_index.json: expected {JASCO_CHORD_VOCAB_SIZE} labels, got {len(vocab)}")
    return vocab


def note_pitch_class(name: str) -> int:
    """Pitch class of a note name with at most one accidental (``E#`` -> 5, ``Gb`` -> 6)."""
    match = _NOTE_RE.match(name)
    if not match or match.end() != len(name):
        raise ChordError(f"not a note name: {name!r}")
    letter, accidental = match.groups()
    return (_LETTER_PCS[_LETTERS.index(letter)] + {"": 0, "#": 1, "b": -1}[accidental]) % 12


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


def parse_label(label: str) -> Chord:
    """Inverse of :func:`chord_label` for every vocabulary label except ``N`` and ``UNK``."""
    head, _, bass_name = label.partition("/")
    match = _NOTE_RE.match(head)
    if not match:
        raise ChordError(f"not a chord label: {label!r}")
    root = note_pitch_class(match.group(0))
    suffix = head[match.end():]
    if suffix not in _SUFFIX_TO_QUALITY:
        raise ChordError(f"{label!r}: unknown chord quality {suffix!r}")
    bass = note_pitch_class(bass_name) if bass_name else None
    return Chord(root, _SUFFIX_TO_QUALITY[suffix], bass)


def all_vocabulary_chords() -> list[Chord]:
    """Every chord that :func:`chord_label` can spell (root position and allowed slash chords)."""
    chords = [Chord(r, q) for q in QUALITIES for r in range(12)]
    chords += [
        Chord(r, q, (r + i) % 12) for q, intervals in SLASH_BASS_INTERVALS.items() for i in intervals for r in range(12)
    ]
    return chords


def label_pitch_classes(label: str) -> tuple[int, ...]:
    """Pitch classes of a vocabulary label; empty for ``N`` and ``UNK``."""
    if label in (CHORD_NO_CHORD, CHORD_UNKNOWN):
        return ()
    return parse_label(label).pitch_classes()


# Penalties of the template matcher (all relative to the total weight of the window):
# sounding notes outside the chord, chord tones that are absent, and a small cost for
# four-note and altered chords so that a plain triad wins when the extra tone is only a passing note.
_OUTSIDE_PENALTY = 0.8
_MISSING_TONE_PENALTY = 0.25
_COMPLEXITY_PENALTY = {"maj": 0.0, "min": 0.0, "7": 0.04, "m7": 0.04, "maj7": 0.06, "6": 0.08,
                       "m6": 0.08, "m7b5": 0.06, "dim": 0.08, "aug": 0.12}
_ROOT_IN_BASS_BONUS = 0.05
_PRESENT_FRACTION = 0.08


def match_chord(weights: np.ndarray, bass: int | None = None) -> Chord | None:
    """Best vocabulary chord for a pitch-class profile.

    ``weights``: (12,) non-negative energy per pitch class (e.g. summed note durations);
    ``bass``: pitch class of the lowest note, used to prefer root-position readings and to add an
    allowed slash bass. Returns None when the profile is empty (no chord).
    """
    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    if total <= 0:
        return None
    profile = weights / total
    present = profile >= _PRESENT_FRACTION
    best, best_score = None, -np.inf
    for quality, (_, intervals) in QUALITIES.items():
        for root in range(12):
            member = np.zeros(12, dtype=bool)
            member[[(root + i) % 12 for i in intervals]] = True
            score = profile[member].sum() - _OUTSIDE_PENALTY * profile[~member].sum()
            score -= _MISSING_TONE_PENALTY * np.count_nonzero(member & ~present) / len(intervals)
            score -= _COMPLEXITY_PENALTY[quality]
            if bass is not None and bass % 12 == root:
                score += _ROOT_IN_BASS_BONUS
            if score > best_score + 1e-12:  # ties keep the earlier (simpler) quality
                best, best_score = (root, quality), score
    root, quality = best
    if bass is not None and not present[bass % 12]:
        bass = None  # a fleeting bass note is a passing tone, not a slash chord
    return vocabulary_chord(root, quality, bass)
