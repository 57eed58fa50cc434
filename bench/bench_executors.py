"""Executor overhead per shard: run K trivial tasks on each backend and subtract the work.

    python bench/bench_executors.py [--tasks 32] [--work-ms 0] [--backends serial,process,dask,slurm]
                                    [--json OUT]

For every backend: start-up time (pool / LocalCluster / nothing), wall time of ``map`` + waiting
for all K results, and per-task overhead = (wall - ideal) / K, where ideal = K * work spread over
the backend's parallel slots. SLURM is measured only if ``sinfo`` answers (slurm/cluster.sh start).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle

from pipeline.atomic import atomic_write_text
from pipeline.executors import ExecutorConfig, SlurmConfig, make_executor

# The SLURM job's python does not have bench/ on sys.path: ship the task by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

DEFAULT_TASKS = 32
DEFAULT_WORKERS = 2
BACKENDS = ("serial", "process", "dask", "slurm")


def busy_task(item: int, work_s: float) -> int:
    """A trivial shard: spin the CPU for ``work_s`` seconds (0: return at once)."""
    end = time.perf_counter() + work_s
    while time.perf_counter() < end:
        pass
    return item


def slurm_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def measure(backend: str, tasks: int, work_s: float, workers: int, folder: Path) -> dict:
    slurm = SlurmConfig(
        folder=str(folder / "submitit"), mem_gb=0.5, time_min=10, poll_interval_s=0.1, sacct_interval_s=2.0
    )
    config = ExecutorConfig(backend=backend, workers=workers, slurm=slurm)
    slots = {"serial": 1, "process": workers, "dask": workers, "slurm": os.cpu_count() or 1}[backend]
    start = time.perf_counter()
    with make_executor(config) as executor:
        ready = time.perf_counter()
        futures = executor.map(_busy_item, [(i, work_s) for i in range(tasks)])
        first = None
        for future in executor.as_completed(futures):
            future.result()
            first = first or time.perf_counter()
        end = time.perf_counter()
        assert [f.result() for f in futures] == list(range(tasks))
    wall = end - ready
    ideal = tasks * work_s / min(slots, tasks)
    return {
        "backend": backend,
        "tasks": tasks,
        "work_ms": work_s * 1e3,
        "startup_s": ready - start,
        "first_result_s": (first or end) - ready,
        "wall_s": wall,
        "overhead_ms_per_task": (wall - ideal) / tasks * 1e3,
    }


def _busy_item(item: tuple[int, float]) -> int:
    return busy_task(*item)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| backend | tasks | work/task ms | start-up s | first result s | wall s | overhead ms/task |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['tasks']} | {r['work_ms']:.0f} | {r['startup_s']:.2f} | "
            f"{r['first_result_s']:.2f} | {r['wall_s']:.2f} | {r['overhead_ms_per_task']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="K tasks per backend")
    parser.add_argument("--work-ms", type=float, default=0.0, help="CPU work inside each task")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="process/dask workers")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_executors_") as tmp:
        for backend in args.backends.split(","):
            if backend == "slurm" and not slurm_answers():
                print("slurm: sinfo does not answer, skipped (slurm/cluster.sh start)", file=sys.stderr)
                continue
            rows.append(measure(backend, args.tasks, args.work_ms / 1e3, args.workers, Path(tmp)))
            print(f"{backend}: done in {rows[-1]['wall_s']:.2f}s", file=sys.stderr)
    print(markdown(rows))
    if args.json:
        atomic_write_text(args.json, json.dumps({"machine_cpus": os.cpu_count(), "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
