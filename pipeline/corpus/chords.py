"""Reading a chord from note content: the corpus renderer's MIDI sources have notes, not symbols.

Chord theory itself (qualities, spelling, parsing, the vocabulary) is :mod:`music.chords`.
"""

from __future__ import annotations

import numpy as np

from music.chords import QUALITIES, Chord, vocabulary_chord

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
