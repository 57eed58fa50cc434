"""Chord progressions from a small functional-harmony grammar.

A progression is a walk over scale degrees with weighted moves (tonic -> subdominant ->
dominant -> tonic, deceptive and plagal motions), closed by a cadence, then coloured: sevenths
and sixths, secondary dominants before their targets, a rare augmented dominant, and a few
inversions written as slash chords (cadential 6/4, V7 in first inversion, descending bass
through I/b7, IV over the dominant as a suspended V). Every result is spelled with
:func:`~music.chords.chord_label`, so it is in the JASCO vocabulary by construction.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from music.chords import ROOT_NAMES, Chord, chord_label

# Degree name -> (semitones above the tonic, triad quality).
MAJOR_DEGREES: dict[str, tuple[int, str]] = {
    "I": (0, "maj"), "ii": (2, "min"), "iii": (4, "min"), "IV": (5, "maj"),
    "V": (7, "maj"), "vi": (9, "min"), "vii": (11, "dim"),
}
MINOR_DEGREES: dict[str, tuple[int, str]] = {
    "i": (0, "min"), "ii": (2, "dim"), "III": (3, "maj"), "iv": (5, "min"),
    "V": (7, "maj"), "VI": (8, "maj"), "VII": (10, "maj"), "vii": (11, "dim"),
}

# Weighted moves between degrees (functional harmony: T -> S -> D -> T, with common detours).
MAJOR_MOVES: dict[str, dict[str, float]] = {
    "I": {"IV": 3, "V": 3, "vi": 2.5, "ii": 2, "iii": 0.7},
    "ii": {"V": 5, "vii": 0.7, "IV": 0.8},
    "iii": {"vi": 3, "IV": 2},
    "IV": {"V": 4, "I": 2, "ii": 1, "vii": 0.5},
    "V": {"I": 5, "vi": 2, "IV": 0.7},
    "vi": {"ii": 3, "IV": 3, "V": 1, "iii": 0.7},
    "vii": {"I": 4, "iii": 1},
}
MINOR_MOVES: dict[str, dict[str, float]] = {
    "i": {"iv": 3, "V": 2.5, "VI": 2.5, "VII": 2, "III": 1.5, "ii": 1},
    "ii": {"V": 5, "vii": 0.5},
    "III": {"VI": 2.5, "iv": 2, "VII": 1},
    "iv": {"V": 3.5, "i": 2, "VII": 1.5, "ii": 0.8},
    "V": {"i": 5, "VI": 2},
    "VI": {"iv": 2, "ii": 1.5, "V": 2, "VII": 2, "III": 0.8},
    "VII": {"III": 3, "i": 2, "VI": 1},
    "vii": {"i": 4},
}
TONIC = {"major": "I", "minor": "i"}
SUBDOMINANT = {"major": "IV", "minor": "iv"}

# Seventh (or sixth) colours per degree; the first is the most idiomatic.
MAJOR_COLOURS: dict[str, tuple[str, ...]] = {
    "I": ("maj7", "6"), "ii": ("m7",), "iii": ("m7",), "IV": ("maj7", "6"),
    "V": ("7",), "vi": ("m7",), "vii": ("m7b5",),
}
MINOR_COLOURS: dict[str, tuple[str, ...]] = {
    "i": ("m7", "m6"), "ii": ("m7b5",), "III": ("maj7",), "iv": ("m7", "m6"),
    "V": ("7",), "VI": ("maj7",), "VII": ("7",), "vii": ("dim",),
}

# Probabilities of the colourings (per chord unless noted).
SECONDARY_DOMINANT_P = 0.18
AUGMENTED_DOMINANT_P = 0.08
CADENTIAL_64_P = 0.35
INVERSION_P = 0.1
SUSPENDED_DOMINANT_P = 0.12
# Cadence types closing a phrase and their weights.
CADENCES: dict[str, float] = {"authentic": 0.6, "plagal": 0.15, "half": 0.25}
# Degrees that can be tonicised by a secondary dominant, per mode.
TONICISABLE = {"major": ("ii", "iii", "IV", "V", "vi"), "minor": ("iv", "V", "VI", "III")}


@dataclasses.dataclass(frozen=True)
class GrammarChord:
    """One chord of a progression: degree name, chord, length in beats (quarter notes)."""

    degree: str
    chord: Chord
    beats: int

    @property
    def label(self) -> str:
        return self.chord.label


def key_name(tonic: int, mode: str) -> str:
    """Human-readable key with the vocabulary's spelling, e.g. ``"Eb major"``."""
    return f"{ROOT_NAMES[tonic % 12]} {mode}"


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _slot_lengths(rng: np.random.Generator, bars: int, beats_per_bar: int) -> list[int]:
    """Harmonic rhythm: one chord per bar, two per bar (even metres), or one per two bars."""
    rhythm = _pick(rng, {"bar": 0.5, "half": 0.3 if beats_per_bar % 2 == 0 else 0.0, "two_bars": 0.2})
    if rhythm == "two_bars" and bars % 2 == 0:
        return [2 * beats_per_bar] * (bars // 2)
    if rhythm == "half":
        # Split most bars in two, keep some whole so that the rhythm is not mechanical.
        slots: list[int] = []
        for _ in range(bars):
            slots += [beats_per_bar // 2] * 2 if rng.random() < 0.7 else [beats_per_bar]
        return slots
    return [beats_per_bar] * bars


def _degree_walk(rng: np.random.Generator, mode: str, count: int) -> list[str]:
    """A walk of ``count`` degrees starting on the tonic and ending with a cadence."""
    moves = MAJOR_MOVES if mode == "major" else MINOR_MOVES
    tonic = TONIC[mode]
    walk = [tonic]
    while len(walk) < count:
        walk.append(_pick(rng, moves[walk[-1]]))
    if count >= 3:
        cadence = _pick(rng, CADENCES)
        if cadence == "authentic":
            walk[-2:] = ["V", tonic]
        elif cadence == "plagal":
            walk[-2:] = [SUBDOMINANT[mode], tonic]
        else:
            walk[-1] = "V"
            if walk[-2] == "V":
                walk[-2] = SUBDOMINANT[mode]
    return walk


def _colour(rng: np.random.Generator, mode: str, degree: str, next_degree: str | None,
            tonic: int, seventh_p: float) -> Chord:
    degrees = MAJOR_DEGREES if mode == "major" else MINOR_DEGREES
    colours = MAJOR_COLOURS if mode == "major" else MINOR_COLOURS
    offset, quality = degrees[degree]
    root = (tonic + offset) % 12
    is_tonic = next_degree == TONIC[mode]
    if degree == "V" and is_tonic and rng.random() < AUGMENTED_DOMINANT_P:
        return Chord(root, "aug")
    if rng.random() < seventh_p:
        options = colours[degree]
        quality = options[0] if len(options) == 1 or rng.random() < 0.7 else options[1]
    bass = None
    if degree == TONIC[mode] and quality == "maj" and next_degree == "V" and rng.random() < CADENTIAL_64_P:
        bass = (root + 7) % 12  # cadential 6/4: I/5 -> V
    elif degree == "V" and quality == "7" and is_tonic and rng.random() < INVERSION_P * 3:
        bass = (root + 4) % 12  # V7/3 -> I: leading tone in the bass
    elif degree == "V" and quality == "maj" and is_tonic and rng.random() < SUSPENDED_DOMINANT_P:
        # IV over the dominant bass (e.g. F/G in C) stands in for a suspended V.
        return Chord((root + 10) % 12, "maj", root)
    elif quality == "maj" and degree == TONIC[mode] and next_degree == SUBDOMINANT[mode] \
            and rng.random() < INVERSION_P * 2:
        bass = (root + 10) % 12  # I/b7 -> IV/3: descending bass line
    elif quality == "maj" and rng.random() < INVERSION_P:
        bass = (root + 4) % 12  # first inversion
    elif quality == "m7b5" and rng.random() < INVERSION_P * 2:
        bass = (root + 10) % 12
    return Chord(root, quality, bass)


def generate_progression(rng: np.random.Generator, tonic: int, mode: str, bars: int,
                         beats_per_bar: int, seventh_p: float) -> list[GrammarChord]:
    """A progression of ``bars`` bars in ``beats_per_bar`` metre (lengths in quarter notes)."""
    if mode not in TONIC:
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    slots = _slot_lengths(rng, bars, beats_per_bar)
    walk = _degree_walk(rng, mode, len(slots))
    chords: list[GrammarChord] = []
    for i, (degree, beats) in enumerate(zip(walk, slots)):
        next_degree = walk[i + 1] if i + 1 < len(walk) else None
        chord = _colour(rng, mode, degree, next_degree, tonic, seventh_p)
        if next_degree in TONICISABLE[mode] and next_degree != degree and rng.random() < SECONDARY_DOMINANT_P:
            degrees = MAJOR_DEGREES if mode == "major" else MINOR_DEGREES
            secondary = Chord((tonic + degrees[next_degree][0] + 7) % 12, "7")
            if beats >= 2 and beats % 2 == 0 and rng.random() < 0.6:
                # Share the slot: the original chord, then V7 of the next chord.
                chords.append(GrammarChord(degree, chord, beats // 2))
                chords.append(GrammarChord(f"V7/{next_degree}", secondary, beats // 2))
                continue
            chord, degree = secondary, f"V7/{next_degree}"
        chords.append(GrammarChord(degree, chord, beats))
    for item in chords:  # every chord must be spellable in the vocabulary
        chord_label(*item.chord)
    return chords
