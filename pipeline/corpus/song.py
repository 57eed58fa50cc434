"""The musical content of one clip, independent of where it came from.

Every source (chord grammar, Bach chorale, lead sheet) produces a :class:`Song`; the arranger
turns it into MIDI and the truth writer into seconds. Positions are integer MIDI ticks at
:data:`TICKS_PER_QUARTER`, so the MIDI file and the truth sidecar share one exact time base.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

from music.vocabulary import CHORD_NO_CHORD

#: MIDI resolution. 960 = 2^6 * 3 * 5 holds 16th notes, triplets and quintuplets exactly.
TICKS_PER_QUARTER: int = 960

#: Tempo is written to MIDI as integer microseconds per quarter note.
MICROSECONDS_PER_MINUTE: int = 60_000_000


def quarters_to_ticks(quarters: float | Fraction) -> int:
    """Music21 offsets (quarter lengths, possibly Fractions) -> ticks, rounded to the grid."""
    return int(round(Fraction(quarters) * TICKS_PER_QUARTER))


@dataclasses.dataclass(frozen=True)
class ChordSpan:
    """A chord label held from ``start`` to ``end`` (ticks)."""

    label: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class Note:
    """One MIDI note: pitch (MIDI number), ``start``/``end`` in ticks, velocity 1-127."""

    pitch: int
    start: int
    end: int
    velocity: int = 96


@dataclasses.dataclass(frozen=True)
class Song:
    """Chords, melody and metre of one clip.

    ``chords`` are contiguous and cover ``[0, length)``; ``melody`` is monophonic and sorted.
    ``facts`` holds source-specific details recorded in the truth sidecar (BWV number, title,
    transposition, segment position...).
    """

    source: str
    key: str
    tempo_bpm: float
    time_signature: tuple[int, int]
    chords: tuple[ChordSpan, ...]
    melody: tuple[Note, ...]
    length: int
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def microseconds_per_quarter(self) -> int:
        return int(round(MICROSECONDS_PER_MINUTE / self.tempo_bpm))

    @property
    def exact_tempo_bpm(self) -> float:
        """The tempo that the MIDI file actually encodes (integer microseconds per quarter)."""
        return MICROSECONDS_PER_MINUTE / self.microseconds_per_quarter

    @property
    def bar_ticks(self) -> int:
        numerator, denominator = self.time_signature
        return numerator * TICKS_PER_QUARTER * 4 // denominator

    def seconds(self, ticks: int) -> float:
        """Exact time of a tick position given the constant tempo."""
        return ticks * self.microseconds_per_quarter / (1e6 * TICKS_PER_QUARTER)

    @property
    def duration(self) -> float:
        return self.seconds(self.length)


def merge_chord_spans(spans: list[ChordSpan], length: int) -> tuple[ChordSpan, ...]:
    """Sort, clip to ``[0, length)``, fill gaps with ``N`` and merge neighbours with one label."""
    result: list[ChordSpan] = []
    cursor = 0
    for span in sorted(spans, key=lambda s: s.start):
        start, end = max(span.start, cursor), min(span.end, length)
        if end <= start:
            continue
        if start > cursor:
            result.append(ChordSpan(CHORD_NO_CHORD, cursor, start))
        result.append(ChordSpan(span.label, start, end))
        cursor = end
    if cursor < length:
        result.append(ChordSpan(CHORD_NO_CHORD, cursor, length))
    merged: list[ChordSpan] = []
    for span in result:
        if merged and merged[-1].label == span.label:
            merged[-1] = ChordSpan(span.label, merged[-1].start, span.end)
        else:
            merged.append(span)
    return tuple(merged)


def monophonic(notes: list[Note], length: int) -> tuple[Note, ...]:
    """Sort notes, keep the highest of simultaneous onsets, cut each at the next onset and at ``length``."""
    by_start: dict[int, Note] = {}
    for note in notes:
        if note.end <= note.start or note.start >= length:
            continue
        kept = by_start.get(note.start)
        if kept is None or note.pitch > kept.pitch:
            by_start[note.start] = note
    ordered = [by_start[t] for t in sorted(by_start)]
    result = []
    for i, note in enumerate(ordered):
        end = min(note.end, length, ordered[i + 1].start if i + 1 < len(ordered) else length)
        if end > note.start:
            result.append(dataclasses.replace(note, end=end))
    return tuple(result)
