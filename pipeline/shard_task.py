"""The shard task: what an executor runs, in any worker process, to produce one shard.

:func:`process_shard` builds the stage once per worker process (heavy models load once, not per
track), decodes each track once, calls the pure ``extract`` and writes the shard atomically. A
track that fails is recorded in the shard's error table. A :class:`ShardJob` is plain data: it
names the stage by its "module:Class" target, so a worker (spawned process, Dask worker, SLURM
job) builds it without any stage registration of its own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from pipeline.arrays import coerce_value
from pipeline.config import config_to_dict
from pipeline.planning import ShardSpec
from pipeline.stage import FeatureExtractor, TrackContext, create_stage
from pipeline.store import StageInfo, TrackError, read_shard_meta, shard_filename, shard_is_complete, write_shard

log = logging.getLogger(__name__)

#: Error type of a track longer than ``sharding.max_track_seconds``.
TOO_LONG = "too_long"

# (stage name or "module:Class", params json) -> built and set-up extractor, per worker process.
_STAGE_CACHE: dict[tuple[str, str], FeatureExtractor] = {}


def stage_info(stage: FeatureExtractor) -> StageInfo:
    """What the shards of ``stage`` record about it (a shard with other info is stale)."""
    return StageInfo(stage.name, stage.version, stage.params_hash, stage.features(), config_to_dict(stage.config))


def cached_stage(name: str, params: Mapping[str, Any]) -> FeatureExtractor:
    """Build and ``setup()`` the stage once per process; later shards in the worker reuse it."""
    key = (name, json.dumps(params, sort_keys=True, default=str))
    if key not in _STAGE_CACHE:
        stage = create_stage(name, params)
        stage.setup()
        _STAGE_CACHE[key] = stage
    return _STAGE_CACHE[key]


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to produce one shard (plain data, picklable)."""

    stage: str  # as the caller named it (log and error messages)
    params: dict[str, Any]
    spec: ShardSpec
    out_dir: str
    #: Folder that relative manifest paths are resolved against (the submitting process's cwd).
    root: str
    #: Tracks longer than this (manifest duration, s) are recorded as errors, never decoded.
    max_track_seconds: float | None = None
    #: "module:Class" of the stage, resolved by the submitting process; None: look ``stage`` up.
    target: str | None = None

    @property
    def stage_ref(self) -> str:
        """What the worker builds the stage from (a target needs no registry in the worker)."""
        return self.target or self.stage


@dataclasses.dataclass(frozen=True)
class ShardResult:
    index: int
    skipped: bool
    rows: int
    errors: int
    seconds: float
    worker: str


def _error_type(exc: BaseException) -> str:
    return getattr(exc, "error_type", None) or type(exc).__name__


def _checked(stage: FeatureExtractor, values: dict[str, Any]) -> dict[str, Any]:
    """The stage's values for its declared features, coerced to the stored dtypes and shapes."""
    specs = stage.features()
    missing = [s.name for s in specs if s.name not in values]
    if missing:
        raise KeyError(f"stage {stage.name} returned no value for {missing}")
    return {s.name: coerce_value(s, values[s.name]) for s in specs}


def _track_error(track_id: str, path: str, exc: BaseException, stage: str) -> TrackError:
    log.warning("%s: %s failed: %s", stage, path, exc)
    message = str(exc)
    # AudioError messages already start with the (resolved) path; do not name the file twice.
    return TrackError(track_id, path, _error_type(exc), message if path in message else f"{path}: {message}")


def _process_group(stage: FeatureExtractor, job: ShardJob, group: list[tuple[str, str]], rows: list, errors: list) -> None:
    """Decode a group of tracks, hand them to ``stage.process_many`` together, collect rows/errors."""
    from pipeline.audio import load_audio  # imported here: workers only need it when they run

    decoded = []
    for track_id, path in group:
        try:
            samples, sr = load_audio(os.path.join(job.root, path), sample_rate=stage.sample_rate, channels=stage.channels)
            decoded.append((track_id, path, samples, sr))
        except Exception as exc:
            errors.append(_track_error(track_id, path, exc, job.stage))
    items = [(samples, sr, TrackContext(tid, path, job.out_dir)) for tid, path, samples, sr in decoded]
    for (track_id, path, _, _), result in zip(decoded, stage.process_many(items)):
        _collect(stage, job, track_id, path, result, rows, errors)


def _collect(stage: FeatureExtractor, job: ShardJob, track_id: str, path: str, result: Any, rows: list,
             errors: list) -> None:
    try:
        if isinstance(result, Exception):
            raise result
        rows.append({"track_id": track_id, "path": path, **_checked(stage, result)})
    except Exception as exc:
        errors.append(_track_error(track_id, path, exc, job.stage))


def _process_streamed(stage: FeatureExtractor, job: ShardJob, track_id: str, path: str, rows: list,
                      errors: list) -> None:
    """A long track through a streaming stage, one chunk in memory at a time."""
    try:
        from pipeline.audio import audio_chunks

        chunks, rate = audio_chunks(os.path.join(job.root, path), stage.stream_chunk_seconds, stage.sample_rate,
                                    stage.channels)
        result: Any = stage.extract_stream(chunks, rate)
    except Exception as exc:
        result = exc
    _collect(stage, job, track_id, path, result, rows, errors)


def _too_long(track_id: str, path: str, seconds: float, limit: float, stage: str) -> TrackError:
    log.warning("%s: %s is %.0f s long, over sharding.max_track_seconds = %.0f s: skipped", stage, path, seconds, limit)
    return TrackError(track_id, path, TOO_LONG,
                      f"{path}: {seconds:.0f} s is longer than sharding.max_track_seconds = {limit:.0f} s "
                      "(stages decode whole tracks: memory grows with length); split the file, or raise the "
                      "limit and re-run with --retry-errors")


def process_shard(job: ShardJob) -> ShardResult:
    """Produce one shard (the executor task). Idempotent: a complete shard is left as it is."""
    started = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    stage = cached_stage(job.stage_ref, job.params)
    info = stage_info(stage)
    spec = job.spec
    final = Path(job.out_dir) / shard_filename(spec.index)
    if shard_is_complete(final, info, spec.track_ids):
        meta = read_shard_meta(final)
        return ShardResult(spec.index, True, meta.planned - len(meta.errors), len(meta.errors), 0.0, worker)
    rows: list[dict[str, Any]] = []
    errors: list[TrackError] = []
    tracks = []
    streams = stage.stream_chunk_seconds
    for track_id, path, seconds in zip(spec.track_ids, spec.paths, spec.durations):
        if streams is not None and seconds > 2 * streams:  # bounded memory, whatever the length
            _process_streamed(stage, job, track_id, path, rows, errors)
        elif job.max_track_seconds is not None and seconds > job.max_track_seconds:
            errors.append(_too_long(track_id, path, seconds, job.max_track_seconds, job.stage))
        else:
            tracks.append((track_id, path))
    group_size = max(1, stage.tracks_per_call())
    for first in range(0, len(tracks), group_size):  # one bad track never sinks the shard
        _process_group(stage, job, tracks[first : first + group_size], rows, errors)
    write_shard(job.out_dir, spec.index, info, spec.track_ids, rows, errors)
    return ShardResult(spec.index, False, len(rows), len(errors), time.perf_counter() - started, worker)
