"""The shard runner: run one stage over a manifest, one task per shard, on any executor.

``run_stage`` plans shards, skips the complete ones, submits the rest through the executor seam and
collects the results with a progress bar. ``process_shard`` is the task: it builds the stage once
per worker process (heavy models load once, not per track), decodes each track once, calls the
pure ``extract`` and writes the shard atomically. A track that fails is recorded in the shard's
error table; a shard whose task dies is reported and simply retried by the next run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.arrays import coerce_value
from pipeline.atomic import atomic_path, atomic_write_text, remove_stale_temp_files
from pipeline.config import config_to_dict, load_config, read_params
from pipeline.planning import ShardingConfig, ShardSpec, plan_from_manifest
from pipeline.reader import error_schema
from pipeline.stage import FeatureExtractor, TrackContext, available_stages, create_stage
from pipeline.store import (
    StageInfo,
    TrackError,
    list_shards,
    read_shard_meta,
    shard_filename,
    shard_is_complete,
    write_shard,
)

log = logging.getLogger(__name__)

ERRORS_FILENAME = "_errors.parquet"
#: Error type of a track longer than ``sharding.max_track_seconds``.
TOO_LONG = "too_long"
SUMMARY_FILENAME = "_run.json"

# (stage name, params json) -> built and set-up extractor, per worker process.
_STAGE_CACHE: dict[tuple[str, str], FeatureExtractor] = {}


def stage_info(stage: FeatureExtractor) -> StageInfo:
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

    stage: str
    params: dict[str, Any]
    spec: ShardSpec
    out_dir: str
    #: Folder that relative manifest paths are resolved against (the submitting process's cwd).
    root: str
    #: Tracks longer than this (manifest duration, s) are recorded as errors, never decoded.
    max_track_seconds: float | None = None


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
    stage = cached_stage(job.stage, job.params)
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


@dataclasses.dataclass
class RunReport:
    stage: str
    out_dir: str
    shards: int = 0
    skipped: int = 0
    written: int = 0
    failed_shards: dict[int, str] = dataclasses.field(default_factory=dict)
    track_errors: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed_shards


def run_stage(
    stage_name: str,
    stage_params: Mapping[str, Any] | None,
    manifest_path: str | Path,
    out_dir: str | Path,
    sharding: ShardingConfig = ShardingConfig(),
    executor: Any = None,
    retry_errors: bool = False,
    progress: bool = True,
) -> RunReport:
    """Run ``stage_name`` over every track of the manifest into ``out_dir``.

    Args:
        executor: any object with ``map(fn, items)`` and ``as_completed(futures)`` (see
            :mod:`pipeline.executors`); None runs serially in this process.
        retry_errors: also recompute complete shards that recorded track errors.
    """
    from pipeline.executors import SerialExecutor
    from pipeline.manifest import read_manifest

    started = time.perf_counter()
    params = dict(stage_params or {})
    stage = create_stage(stage_name, params)  # validates params before anything is submitted
    info = stage_info(stage)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)
    plan = plan_from_manifest(read_manifest(manifest_path), sharding)
    _remove_unplanned_shards(out, len(plan))

    report = RunReport(stage=stage_name, out_dir=str(out), shards=len(plan))
    pending = []
    for spec in plan:
        path = out / shard_filename(spec.index)
        if shard_is_complete(path, info, spec.track_ids) and not (retry_errors and read_shard_meta(path).errors):
            report.skipped += 1
        else:
            if path.exists():
                path.unlink()  # stale (other params/plan) or forced retry: never mix old and new
            pending.append(ShardJob(stage_name, params, spec, str(out.resolve()), os.getcwd(),
                                    sharding.max_track_seconds))
    log.info("%s: %d shards, %d complete, %d to run", stage_name, len(plan), report.skipped, len(pending))

    if pending:
        owns_executor = executor is None
        executor = executor or SerialExecutor()
        try:
            futures = executor.map(process_shard, pending)
            index_of = {id(f): job.spec.index for f, job in zip(futures, pending)}
            bar = tqdm(total=sum(len(j.spec.track_ids) for j in pending), unit="track",
                       desc=stage_name, disable=not progress)
            for future in executor.as_completed(futures):
                index = index_of[id(future)]
                try:
                    result = future.result()
                    report.written += 0 if result.skipped else 1
                    report.skipped += 1 if result.skipped else 0
                except Exception as exc:  # the task died: report, keep going, the next run retries
                    report.failed_shards[index] = f"{type(exc).__name__}: {exc}"
                    log.error("%s: shard %d failed: %s", stage_name, index, exc)
                    log.debug("%s", traceback.format_exc())
                bar.update(len(plan[index].track_ids))
            bar.close()
        finally:
            if owns_executor:
                executor.close()

    report.track_errors = _write_error_table(out, report)
    report.seconds = time.perf_counter() - started
    atomic_write_text(out / SUMMARY_FILENAME, json.dumps(dataclasses.asdict(report), indent=2, sort_keys=True))
    return report


def _remove_unplanned_shards(out: Path, planned: int) -> None:
    for path in list_shards(out):
        if int(path.stem.split("-")[1]) >= planned:
            log.info("removing %s: not in the current plan", path)
            path.unlink()


def _write_error_table(out: Path, report: RunReport) -> int:
    """Collect per-track errors of every shard (and failed shards) into ``_errors.parquet``."""
    rows = []
    for path in list_shards(out):
        meta = read_shard_meta(path)
        rows += [{"stage": report.stage, "shard": meta.shard, **dataclasses.asdict(e)} for e in meta.errors]
    track_errors = len(rows)
    rows += [
        {"stage": report.stage, "shard": index, "track_id": "", "path": "", "error_type": "shard_failed", "reason": message}
        for index, message in sorted(report.failed_shards.items())
    ]
    with atomic_path(out / ERRORS_FILENAME) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=error_schema()), tmp)
    return track_errors


# ----------------------------------------------------------------------------- CLI


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a registered stage over a manifest into a shard folder")
    parser.add_argument("stage", help=f"stage name ({', '.join(available_stages())}) or module:Class")
    add_run_arguments(parser)
    parser.set_defaults(func=lambda args: run_stage_from_args(args.stage, args))

    info = subparsers.add_parser("shards", help="summarise a stage output folder (metadata, errors)")
    info.add_argument("folder")
    info.set_defaults(func=_cli_shards)


def add_stage_cli(
    subparsers: argparse._SubParsersAction,
    stage_name: str,
    help: str,
    extract_help: str,
    extract: Callable[[argparse.Namespace], int] | None = None,
) -> tuple[argparse._SubParsersAction, argparse.ArgumentParser]:
    """Add ``chordflow <stage_name>`` with its ``extract`` action (the standard run options).

    ``extract`` defaults to :func:`run_stage_from_args` for the stage. Returns the stage's action
    subparsers (for its other actions: eval, plot, ...) and the ``extract`` parser (for extra options).
    """
    parser = subparsers.add_parser(stage_name, help=help)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    extract_parser = actions.add_parser("extract", help=extract_help)
    add_run_arguments(extract_parser)
    extract_parser.set_defaults(func=extract or (lambda args: run_stage_from_args(stage_name, args)))
    return actions, extract_parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every stage's ``extract`` subcommand takes (see :func:`run_stage_from_args`)."""
    parser.add_argument("--manifest", required=True, help="manifest parquet")
    parser.add_argument("--out", required=True, help="output folder for shard-*.parquet")
    parser.add_argument("--params", default="params.yaml", help="params file (stage section = stage name)")
    parser.add_argument("--executor", choices=["serial", "process", "dask", "slurm"], help="override executor.backend")
    parser.add_argument("--workers", type=int, help="override executor.workers")
    parser.add_argument("--tracks-per-shard", type=int, help="override sharding.tracks_per_shard")
    parser.add_argument("--retry-errors", action="store_true", help="recompute shards that recorded track errors")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_executor_from_params(params: Mapping[str, Any], backend: str | None = None, workers: int | None = None):
    from pipeline.executors import ExecutorConfig, make_executor

    section = dict(params.get("executor") or {})
    if backend:
        section["backend"] = backend
    if workers:
        section["workers"] = workers
    return make_executor(load_config(ExecutorConfig, section, where="executor"))


def run_stage_from_args(stage_name: str, args: argparse.Namespace, overrides: Mapping[str, Any] | None = None) -> int:
    """Run ``stage_name`` with the options of :func:`add_run_arguments`; exit code 1 if a shard failed.

    ``overrides`` are merged into the stage's params section (e.g. an input folder that
    ``dvc.yaml`` passes on the command line rather than through ``params.yaml``).
    """
    params = read_params(args.params) if Path(args.params).exists() else {}
    sharding_values = dict(params.get("sharding") or {})
    if args.tracks_per_shard:
        sharding_values["tracks_per_shard"] = args.tracks_per_shard
    sharding = load_config(ShardingConfig, sharding_values, where="sharding")
    try:
        with build_executor_from_params(params, args.executor, args.workers) as executor:
            stage_params = {**(params.get(stage_name) or {}), **(overrides or {})}
            report = run_stage(stage_name, stage_params, args.manifest, args.out, sharding, executor,
                               args.retry_errors, progress=not args.no_progress)
    except OSError as exc:  # disk full, read-only output folder, ...: one clear line, no traceback
        print(f"{stage_name}: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.stage}: {report.shards} shards ({report.written} written, {report.skipped} already complete), "
        f"{report.track_errors} track errors, {len(report.failed_shards)} failed shards in {report.seconds:.1f}s"
    )
    for index, message in sorted(report.failed_shards.items()):
        print(f"  shard {index}: {message}")
    return 0 if report.ok else 1


def _cli_shards(args: argparse.Namespace) -> int:
    from pipeline.reader import StageStore

    store = StageStore(args.folder)
    info = store.info
    print(f"{args.folder}: stage {info.stage} v{info.version}, params {info.params_hash}, "
          f"frame rate {info.frame_rate}, {len(store.shard_paths)} shards, {len(store)} tracks")
    for spec in info.features:
        print(f"  {spec.name}: {spec.dtype} {list(spec.shape)}" + (f" @ {spec.frame_rate} fps" if spec.frame_rate else ""))
    errors = store.errors().to_pylist()
    print(f"  {len(errors)} track errors")
    for err in errors:
        print(f"    [{err['error_type']}] {err['reason']}")
    return 0
