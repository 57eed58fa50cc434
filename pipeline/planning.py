"""Shard planning: group a manifest's tracks into shards by count or by total duration.

The plan depends only on the manifest rows (in manifest order, which is sorted and deterministic)
and the sharding parameters, so every run, on every machine and executor, plans the same shards;
that is what makes "skip complete shards" safe.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class ShardingConfig:
    """``tracks_per_shard`` caps the count; ``seconds_per_shard`` (if set) caps the audio duration.

    Aim for shards of a few minutes of work each: large enough that executor overhead (process
    start, SLURM scheduling) is small, small enough that a killed task loses little.
    """

    tracks_per_shard: int = 16
    seconds_per_shard: float | None = None
    #: At least this many shards when the manifest has that many tracks: a small run is cut finer so
    #: that every worker has a shard (8 tracks at 16 per shard would otherwise keep one of two
    #: workers idle). Set it to the worker count; it depends on the params only, like the rest.
    min_shards: int = 1
    #: Longer tracks are recorded as ``too_long`` errors instead of being decoded: stages get
    #: whole tracks, so a worker's memory grows with the longest track (about 2.2 GB per hour
    #: of audio for loudness at 22.05 kHz). None: no limit.
    max_track_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.tracks_per_shard < 1:
            raise ValueError("tracks_per_shard must be >= 1")
        if self.min_shards < 1:
            raise ValueError("min_shards must be >= 1")
        if self.seconds_per_shard is not None and self.seconds_per_shard <= 0:
            raise ValueError("seconds_per_shard must be > 0")
        if self.max_track_seconds is not None and self.max_track_seconds <= 0:
            raise ValueError("max_track_seconds must be > 0")


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """One unit of work: the tracks of shard ``index`` with their paths and durations."""

    index: int
    track_ids: tuple[str, ...]
    paths: tuple[str, ...]
    durations: tuple[float, ...]

    @property
    def seconds(self) -> float:
        return float(sum(self.durations))


def plan_shards(
    track_ids: Sequence[str],
    paths: Sequence[str],
    durations: Sequence[float],
    config: ShardingConfig,
) -> list[ShardSpec]:
    """Cut the track list into consecutive shards.

    A shard closes when it holds ``tracks_per_shard`` tracks (fewer when ``min_shards`` needs more
    shards: ``ceil(tracks / min_shards)``) or when adding the next track would pass
    ``seconds_per_shard`` (a single track longer than that gets a shard of its own).
    """
    if not (len(track_ids) == len(paths) == len(durations)):
        raise ValueError("track_ids, paths and durations must have the same length")
    shards: list[ShardSpec] = []
    current: list[int] = []
    seconds = 0.0
    limit = config.seconds_per_shard
    per_shard = min(config.tracks_per_shard, max(1, -(-len(track_ids) // config.min_shards)))

    def close() -> None:
        nonlocal current, seconds
        if current:
            shards.append(
                ShardSpec(
                    index=len(shards),
                    track_ids=tuple(track_ids[i] for i in current),
                    paths=tuple(paths[i] for i in current),
                    durations=tuple(float(durations[i]) for i in current),
                )
            )
        current, seconds = [], 0.0

    for i, duration in enumerate(durations):
        over_time = limit is not None and current and seconds + float(duration) > limit
        if len(current) >= per_shard or over_time:
            close()
        current.append(i)
        seconds += float(duration)
    close()
    return shards


def plan_from_manifest(manifest: pa.Table, config: ShardingConfig) -> list[ShardSpec]:
    """:func:`plan_shards` over a manifest table (columns ``track_id``, ``path``, ``duration``)."""
    return plan_shards(
        manifest.column("track_id").to_pylist(),
        manifest.column("path").to_pylist(),
        manifest.column("duration").to_pylist(),
        config,
    )
