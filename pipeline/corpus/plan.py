"""What each clip of the corpus will be, decided from ``(seed, index)`` before anything renders.

A plan fixes the clip's source kind, split, storage format and output paths. Each decision only
depends on the seed and the clip index (never on ``n``), so growing the corpus keeps old clips.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from pipeline.corpus.config import (
    SLICE_CHANNELS, SLICE_FORMATS, SLICE_SAMPLE_RATES, SPLITS, CorpusConfig, clip_params_hash,
)
from pipeline.corpus.render import AudioFormat

SOURCE_KINDS: tuple[str, ...] = ("grammar", "chorale", "folk")
SPLIT_BLOCK = 20  # splits are dealt in shuffled blocks of this many clips
GOLDEN_FRACTION = (math.sqrt(5) - 1) / 2
# Salts that separate the random streams drawn from the same seed.
SALT_KIND, SALT_SPLIT = 1, 2
OUTPUT_DIRS = {"audio": "audio", "drum_stem": "stems/drums", "midi": "midi", "truth": "truth"}


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """Everything about clip ``index`` that is fixed before composing it."""

    index: int
    clip_id: str
    params_hash: str
    kind: str
    split: str
    audio_format: AudioFormat
    stem_format: AudioFormat
    in_format_slice: bool

    def relative_paths(self) -> dict[str, str]:
        """Output files relative to the corpus root (keys: audio, drum_stem, midi, truth)."""
        return {
            "audio": f"{OUTPUT_DIRS['audio']}/{self.clip_id}.{self.audio_format.extension}",
            "drum_stem": f"{OUTPUT_DIRS['drum_stem']}/{self.clip_id}.{self.stem_format.extension}",
            "midi": f"{OUTPUT_DIRS['midi']}/{self.clip_id}.mid",
            "truth": f"{OUTPUT_DIRS['truth']}/{self.clip_id}.json",
        }


def source_kind(config: CorpusConfig, index: int) -> str:
    """Source kind of clip ``index``: a golden-ratio sequence keeps the shares close even for small n."""
    offset = np.random.default_rng([config.seed, SALT_KIND]).random()
    u = (offset + index * GOLDEN_FRACTION) % 1.0
    shares = config.source_mix.as_dict()
    total = sum(shares.values())
    cumulative = 0.0
    for kind in SOURCE_KINDS:
        cumulative += shares[kind] / total
        if u < cumulative:
            return kind
    return next(k for k in reversed(SOURCE_KINDS) if shares[k] > 0)


def _block_counts(config: CorpusConfig) -> list[int]:
    """Clips per split in a block of SPLIT_BLOCK (largest-remainder rounding)."""
    fractions = dataclasses.astuple(config.split_fractions)
    raw = [f * SPLIT_BLOCK for f in fractions]
    counts = [int(math.floor(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[:SPLIT_BLOCK - sum(counts)]:
        counts[i] += 1
    return counts


def split_of(config: CorpusConfig, index: int) -> str:
    """Suggested split of clip ``index``: each block of SPLIT_BLOCK clips is shuffled and dealt."""
    block, position = divmod(index, SPLIT_BLOCK)
    labels = [name for name, count in zip(SPLITS, _block_counts(config)) for _ in range(count)]
    order = np.random.default_rng([config.seed, SALT_SPLIT, block]).permutation(SPLIT_BLOCK)
    return labels[int(order[position])]


def plan_clip(config: CorpusConfig, index: int) -> ClipPlan:
    every = config.format_slice_every
    in_slice = every > 0 and index % every == every - 1
    if in_slice:
        rank = index // every
        audio_format = AudioFormat(SLICE_FORMATS[rank % len(SLICE_FORMATS)], SLICE_SAMPLE_RATES[rank % len(SLICE_SAMPLE_RATES)],
                                   SLICE_CHANNELS[rank % len(SLICE_CHANNELS)])
    else:
        audio_format = AudioFormat(config.audio_format, config.sample_rate, 2)
    # The drum stem matches the mix's rate and channels so that mix and stem align sample by sample.
    stem_format = AudioFormat(config.stem_format, audio_format.sample_rate, audio_format.channels)
    return ClipPlan(
        index=index, clip_id=f"clip_{index:05d}", params_hash=clip_params_hash(config, index),
        kind=source_kind(config, index), split=split_of(config, index), audio_format=audio_format,
        stem_format=stem_format, in_format_slice=in_slice,
    )


def plan_corpus(config: CorpusConfig) -> list[ClipPlan]:
    return [plan_clip(config, i) for i in range(config.n)]
