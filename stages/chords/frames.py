"""Chord timeline -> frame-level chord indices: the ONE conversion used by training and sampling.

Frame ``k`` covers ``[k/fr, (k+1)/fr)`` and gets the chord sounding at its centre ``(k + 0.5)/fr``.
A timeline is a list of ``(label, start)`` changes (each chord lasts until the next change, the last
one to the end; what a user gives the sampler, and what JASCO stores) or of ``(label, start, end)``
segments (gaps are no chord; what the chords stage stores). Times before the first chord are ``N``.

The stage stores ``timeline_to_frames(timeline, frames_covering(n, sr, fr))`` next to the timeline; the
sampler calls the same function on the user's list. A training crop that starts at frame ``f``
equals ``timeline_to_frames(timeline, n, first_frame=f)``, so there is no off-by-one between them.

JASCO's released models read a frame's chord at its *start* ``k/fr`` instead (the last change at or
before it): ``sample_at="start"`` (:data:`FRAME_SAMPLE_POINTS`), used for the ``jasco`` network.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from music.frames import SECONDS_TOLERANCE_FRAMES
from music.vocabulary import CHORD_NO_CHORD
from pipeline.constants import LATENT_FRAME_RATE
from stages.chords.vocab import NO_CHORD_INDEX, Vocabulary

#: Storage dtype of frame-level chord indices (vocabularies are far below 32767 labels).
CHORD_INDEX_DTYPE = np.int16

# A frame centre closer than SECONDS_TOLERANCE_FRAMES to a chord boundary counts as on the boundary
# and goes to the later chord, so that boundaries at k / fr seconds behave exactly.

Segment = tuple[str, float, float]
#: Where in frame k its chord is read, in frames from k/fr: the centre (chordflow) or the start (JASCO).
FRAME_SAMPLE_POINTS: dict[str, float] = {"centre": 0.5, "start": 0.0}


def as_segments(timeline: Iterable[Any], end_s: float = math.inf) -> list[Segment]:
    """Read a timeline into ``(label, start, end)`` segments sorted by start.

    Accepts ``(label, start)`` / ``(label, start, end)`` tuples or ``{"label", "start"[, "end"]}``
    dicts (all items in the same form). In the ``(label, start)`` form a chord ends at the next
    change and the last one at ``end_s``.
    """
    items = [_item(entry) for entry in timeline]
    if not items:
        return []
    has_end = {end is not None for _, _, end in items}
    if len(has_end) > 1:
        raise ValueError("timeline mixes (label, start) and (label, start, end) items")
    items.sort(key=lambda item: item[1])
    if has_end.pop():
        return [(label, start, end) for label, start, end in items]
    starts = [start for _, start, _ in items]
    ends = starts[1:] + [end_s]
    return [(label, start, end) for (label, start, _), end in zip(items, ends)]


def _item(entry: Any) -> tuple[str, float, float | None]:
    if isinstance(entry, Mapping):
        label, start, end = entry["label"], entry["start"], entry.get("end")
    elif isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) in (2, 3):
        label, start, end = entry[0], entry[1], entry[2] if len(entry) == 3 else None
    else:
        raise ValueError(f"timeline item {entry!r}: expected (label, start[, end]) or a dict")
    if not isinstance(label, str):
        raise ValueError(f"timeline item {entry!r}: label must be a string")
    start = float(start)
    end = None if end is None else float(end)
    if not math.isfinite(start) or (end is not None and (math.isnan(end) or end < start)):
        raise ValueError(f"timeline item {entry!r}: bad times")
    return label, start, end


def frame_segments(starts: np.ndarray, ends: np.ndarray, n_frames: int, frame_rate: float = LATENT_FRAME_RATE,
                   first_frame: int = 0, sample_at: str = "centre") -> np.ndarray:
    """Which segment sounds at the centre (or ``sample_at`` the start) of each frame.

    Args:
        starts, ends: (S,) segment times in seconds, sorted by start.
        n_frames: frames to produce, frames ``first_frame .. first_frame + n_frames - 1``.
    Returns:
        (n_frames,) int64 segment index per frame, -1 where no segment covers the centre. Segments
        should not overlap; if they do, the one that started last decides (N once it has ended).
    """
    if sample_at not in FRAME_SAMPLE_POINTS:
        raise ValueError(f"sample_at {sample_at!r}: choose one of {sorted(FRAME_SAMPLE_POINTS)}")
    centres = np.arange(first_frame, first_frame + n_frames, dtype=np.float64) + FRAME_SAMPLE_POINTS[sample_at]
    if len(starts) == 0:
        return np.full(n_frames, -1, dtype=np.int64)
    # Compare in frame units, with a tolerance, so a boundary at exactly k/fr starts frame k's
    # successor's chord no matter how k/fr rounds in binary.
    start_frames = np.asarray(starts, dtype=np.float64) * frame_rate - SECONDS_TOLERANCE_FRAMES
    end_frames = np.asarray(ends, dtype=np.float64) * frame_rate - SECONDS_TOLERANCE_FRAMES
    segment = np.searchsorted(start_frames, centres, side="right") - 1
    covered = segment >= 0
    covered[covered] &= centres[covered] < end_frames[segment[covered]]
    return np.where(covered, segment, -1)


def timeline_to_frames(timeline: Iterable[Any], n_frames: int, vocabulary: Vocabulary,
                       frame_rate: float = LATENT_FRAME_RATE, first_frame: int = 0,
                       sample_at: str = "centre") -> np.ndarray:
    """Frame-level chord indices of a timeline (see the module doc for the frame convention).

    Args:
        timeline: ``[(label, start), ...]`` or ``[(label, start, end), ...]`` (or dicts).
        n_frames: number of frames to return.
        vocabulary: maps labels to indices (unknown labels -> ``UNK``, counted in the vocabulary).
        first_frame: index of the first returned frame (a crop starting at ``first_frame / fr``).
    Returns:
        (n_frames,) int16 chord indices; ``N`` (0) where no chord sounds.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    segments = as_segments(timeline)
    starts = np.array([s for _, s, _ in segments], dtype=np.float64)
    ends = np.array([e for _, _, e in segments], dtype=np.float64)
    codes = np.array([vocabulary.encode(label) for label, _, _ in segments] + [NO_CHORD_INDEX], dtype=np.int64)
    which = frame_segments(starts, ends, n_frames, frame_rate, first_frame, sample_at)
    return codes[which].astype(CHORD_INDEX_DTYPE)  # index -1 picks the trailing N


def frames_to_timeline(indices: np.ndarray, vocabulary: Vocabulary,
                       frame_rate: float = LATENT_FRAME_RATE) -> list[Segment]:
    """Inverse view: runs of equal frame indices as ``(label, start, end)`` segments on frame edges
    (``N`` runs included). ``timeline_to_frames`` of the result gives ``indices`` back."""
    indices = np.asarray(indices)
    if indices.size == 0:
        return []
    change = np.flatnonzero(np.diff(indices)) + 1
    bounds = np.concatenate([[0], change, [indices.size]])
    return [(vocabulary.decode(int(indices[a])), a / frame_rate, b / frame_rate) for a, b in zip(bounds[:-1], bounds[1:])]


def label_frame_counts(timeline: Iterable[Any], n_frames: int, frame_rate: float = LATENT_FRAME_RATE) -> dict[str, int]:
    """How many frames each label covers (same centre rule; ``N`` for uncovered frames)."""
    segments = as_segments(timeline)
    starts = np.array([s for _, s, _ in segments], dtype=np.float64)
    ends = np.array([e for _, _, e in segments], dtype=np.float64)
    which = frame_segments(starts, ends, n_frames, frame_rate)
    counts: dict[str, int] = {}
    labels = [label for label, _, _ in segments] + [CHORD_NO_CHORD]
    for segment, count in zip(*np.unique(which, return_counts=True)):
        label = labels[segment]
        counts[label] = counts.get(label, 0) + int(count)
    return counts
