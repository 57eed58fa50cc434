"""A generated melody that follows a chord progression.

Rhythm comes from one-bar cells; pitches are chord tones on strong positions (downbeats, the
middle of even bars, long notes) and scale steps in between (passing and neighbour tones), with
a drifting contour kept inside :data:`MELODY_RANGE`. The last note lands on the final chord's root.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from music.chords import parse_label
from music.vocabulary import CHORD_NO_CHORD, CHORD_UNKNOWN
from pipeline.corpus.song import TICKS_PER_QUARTER, ChordSpan, Note

#: MIDI range of generated melodies (C4..A5), inside JASCO's melody bins (G2..B6).
MELODY_RANGE: tuple[int, int] = (60, 81)
SCALES: dict[str, tuple[int, ...]] = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

# One-bar rhythm cells in quarter notes; a negative value is a rest.
RHYTHM_CELLS: dict[int, tuple[tuple[float, ...], ...]] = {
    4: ((1, 1, 1, 1), (2, 1, 1), (1, 1, 2), (1.5, 0.5, 1, 1), (0.5, 0.5, 1, 1, 1), (1, 0.5, 0.5, 2),
        (2, 2), (0.5, 0.5, 0.5, 0.5, 1, 1), (3, 1), (1, 1, 1, -1), (1.5, 0.5, 2), (-1, 1, 1, 1)),
    3: ((1, 1, 1), (2, 1), (1.5, 0.5, 1), (3,), (1, 0.5, 0.5, 1), (0.5, 0.5, 1, 1), (-1, 1, 1)),
    2: ((1, 1), (0.5, 0.5, 1), (1.5, 0.5), (2,), (0.5, 0.5, 0.5, 0.5)),
}
STRONG_VELOCITY, WEAK_VELOCITY = 100, 86
LEGATO = 0.92  # fraction of the written length that sounds, so repeated notes re-articulate


def _cells_for(beats_per_bar: int) -> tuple[tuple[float, ...], ...]:
    return RHYTHM_CELLS.get(beats_per_bar, (tuple([1.0] * beats_per_bar),))


def _chord_at(chords: list[ChordSpan], tick: int) -> ChordSpan:
    for span in chords:
        if span.start <= tick < span.end:
            return span
    return chords[-1]


def _tones(label: str) -> tuple[int, ...]:
    if label in (CHORD_NO_CHORD, CHORD_UNKNOWN):
        return ()
    return parse_label(label)._replace(bass=None).pitch_classes()  # a slash bass is not a melody target


def _candidates(pitch_classes: set[int]) -> list[int]:
    lo, hi = MELODY_RANGE
    return [p for p in range(lo, hi + 1) if p % 12 in pitch_classes]


def _nearest(rng: np.random.Generator, options: list[int], target: float, avoid: int | None) -> int:
    weights = np.array([np.exp(-abs(p - target) / 2.0) * (0.25 if p == avoid else 1.0) for p in options])
    return options[int(rng.choice(len(options), p=weights / weights.sum()))]


def generate_melody(rng: np.random.Generator, chords: list[ChordSpan], tonic: int, mode: str,
                    beats_per_bar: int, length: int) -> list[Note]:
    """Monophonic melody over ``chords`` (ticks), ``length`` ticks long, in ``tonic``/``mode``."""
    scale = {(tonic + s) % 12 for s in SCALES[mode]}
    bar = beats_per_bar * TICKS_PER_QUARTER
    notes: list[Note] = []
    pitch = int(rng.integers(66, 74))
    direction = 1 if rng.random() < 0.5 else -1
    cells = _cells_for(beats_per_bar)
    bar_start = 0
    while bar_start < length:
        last_bar = bar_start + bar >= length
        cell = (float(beats_per_bar),) if last_bar else cells[int(rng.integers(len(cells)))]
        position = bar_start
        for value in cell:
            duration = int(round(Fraction(abs(value)).limit_denominator(12) * TICKS_PER_QUARTER))
            start, end = position, min(position + duration, length)
            position += duration
            if value < 0 or end <= start:
                continue
            span = _chord_at(chords, start)
            chord_tones = set(_tones(span.label))
            in_bar = start - bar_start
            strong = in_bar == 0 or (beats_per_bar % 2 == 0 and in_bar == bar // 2) or value >= 2
            if last_bar and chord_tones:
                root = parse_label(span.label).root
                pitch = _nearest(rng, _candidates({root}), pitch, None)
            elif strong and chord_tones:
                pitch = _nearest(rng, _candidates(chord_tones), pitch + 2 * direction, pitch)
            else:
                # Passing / neighbour tone: one or two scale (or chord) steps in the current direction.
                steps = _candidates(scale | chord_tones)
                here = min(range(len(steps)), key=lambda i: abs(steps[i] - pitch))
                move = direction * (1 if rng.random() < 0.75 else 2)
                pitch = steps[min(max(here + move, 0), len(steps) - 1)]
            if pitch >= MELODY_RANGE[1] - 2:
                direction = -1
            elif pitch <= MELODY_RANGE[0] + 2:
                direction = 1
            elif rng.random() < 0.2:
                direction = -direction
            velocity = STRONG_VELOCITY if strong else WEAK_VELOCITY
            velocity += int(rng.integers(-6, 7))
            sounding = max(1, int((end - start) * (1.0 if last_bar else LEGATO)))
            notes.append(Note(pitch, start, start + sounding, velocity))
        bar_start += bar
    return notes
