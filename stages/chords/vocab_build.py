"""``chordflow chords build-vocab``: a vocabulary from the timelines of extracted shards.

A label's frequency is the number of latent frames it covers (the centre rule of
:mod:`stages.chords.frames`), i.e. how often training will see it. Order and ties are decided by
:func:`stages.chords.vocab.build_vocabulary` (frequency, then name), so the same shards always
give the same JSON, whatever the shard order or executor.
"""

from __future__ import annotations

import collections
from pathlib import Path

from stages.chords.frames import label_frame_counts
from stages.chords.vocab import Vocabulary, build_vocabulary


def label_frame_totals(features_dir: str | Path) -> collections.Counter[str]:
    """Frames covered by each (normalised) label over every track of a chords shard folder."""
    from pipeline.reader import StageStore

    store = StageStore(features_dir)
    if store.stage != "chords":
        raise ValueError(f"{features_dir}: holds stage {store.stage!r}, not chords")
    totals: collections.Counter[str] = collections.Counter()
    for row in store:
        totals.update(label_frame_counts(row["timeline"], len(row["chord_index"]), store.frame_rate))
    return totals


def build_vocabulary_from_store(features_dir: str | Path, min_frames: int = 1, max_size: int | None = None) -> Vocabulary:
    """Vocabulary of the labels in ``features_dir`` covering at least ``min_frames`` frames."""
    return build_vocabulary(label_frame_totals(features_dir), min_count=min_frames, max_size=max_size)
