"""The shard runner: run one stage over a manifest, one task per shard, on any executor.

``run_stage`` plans shards, skips the complete ones, submits the rest through the executor seam and
collects the results with a progress bar. The task itself is :func:`pipeline.shard_task.process_shard`;
a shard whose task dies is reported and simply retried by the next run. The ``chordflow run``
command line around this is :mod:`pipeline.run_cli`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.atomic import atomic_path, atomic_write_text, remove_stale_temp_files
from pipeline.executors import SerialExecutor
from pipeline.manifest import read_manifest
from pipeline.planning import ShardingConfig, plan_from_manifest
from pipeline.reader import error_schema
from pipeline.shard_task import ShardJob, process_shard, stage_info
from pipeline.stage import create_stage, stage_target
from pipeline.store import list_shards, read_shard_meta, shard_filename, shard_is_complete

log = logging.getLogger(__name__)

ERRORS_FILENAME = "_errors.parquet"
SUMMARY_FILENAME = "_run.json"


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
    started = time.perf_counter()
    params = dict(stage_params or {})
    stage = create_stage(stage_name, params)  # validates params before anything is submitted
    target = stage_target(stage_name)  # workers build the stage from this, with no registry of their own
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
                                    sharding.max_track_seconds, target))
    log.info("%s: %d shards, %d complete, %d to run", stage_name, len(plan), report.skipped, len(pending))
    # Longest shards first: the last ones to finish are then short, so no worker idles long at the end
    # (the shards' contents and files do not depend on the order).
    pending.sort(key=lambda job: -job.spec.seconds)

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
