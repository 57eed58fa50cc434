"""Behaviour of the local executor backends (serial, process pool, Dask LocalCluster).

The SLURM backend is covered by tests/test_slurm.py against a real cluster.
"""

from __future__ import annotations

import os
import time

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.executors import (
    DaskExecutor,
    Executor,
    ExecutorConfig,
    ProcessExecutor,
    SerialExecutor,
    SlurmConfig,
    make_executor,
)
from pipeline.slurm_executor import slurm_parameters

ITEMS = list(range(12))
WORKERS = 2

# Per-process state, as the shard runner keeps its loaded models: counts how often this process
# "loaded the model" and how many tasks it ran.
_MODEL_LOADS = 0
_TASKS_RUN = 0


def square_plus_offset(x: int, offset: int = 0) -> int:
    return x * x + offset


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is corrupt")
    return x * 10


def sleep_then_return(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def use_cached_model(_: int) -> tuple[int, int, int]:
    """Return (pid, model loads in this process, tasks run by this process so far)."""
    global _MODEL_LOADS, _TASKS_RUN
    if _MODEL_LOADS == 0:
        _MODEL_LOADS += 1
        time.sleep(0.05)  # a "model load"
    _TASKS_RUN += 1
    time.sleep(0.02)  # give the other worker a chance to pick up tasks too
    return os.getpid(), _MODEL_LOADS, _TASKS_RUN


@pytest.fixture(scope="module")
def process_executor():
    with ProcessExecutor(WORKERS) as executor:
        yield executor


@pytest.fixture(scope="module")
def dask_executor():
    # A LocalCluster takes a few seconds to start: one for the whole module.
    with DaskExecutor(WORKERS) as executor:
        yield executor


@pytest.fixture(scope="module")
def serial_executor():
    with SerialExecutor() as executor:
        yield executor


@pytest.fixture(params=["serial", "process", "dask"])
def executor(request) -> Executor:
    return request.getfixturevalue(f"{request.param}_executor")


def test_backends_agree_on_results(executor: Executor) -> None:
    futures = executor.map(square_plus_offset, ITEMS)
    assert [f.result(timeout=60) for f in futures] == [x * x for x in ITEMS]


def test_submit_passes_args_and_kwargs(executor: Executor) -> None:
    future = executor.submit(square_plus_offset, 4, offset=3)
    assert future.result(timeout=60) == 19
    assert future.done()


def test_failure_propagates_and_keeps_other_results(executor: Executor) -> None:
    futures = executor.map(fail_on_three, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="item 3 is corrupt"):
        futures[2].result(timeout=60)
    assert [futures[i].result(timeout=60) for i in (0, 1, 3)] == [10, 20, 40]


def test_as_completed_yields_every_future_once(executor: Executor) -> None:
    futures = executor.map(fail_on_three, ITEMS)
    seen = list(executor.as_completed(futures, timeout=60))
    assert len(seen) == len(futures)
    assert {id(f) for f in seen} == {id(f) for f in futures}
    assert all(f.done() for f in seen)


def test_as_completed_yields_fast_tasks_before_slow_ones(process_executor: ProcessExecutor) -> None:
    slow = process_executor.submit(sleep_then_return, 1.5)
    fast = process_executor.submit(sleep_then_return, 0.0)
    order = list(process_executor.as_completed([slow, fast], timeout=60))
    assert order[0] is fast


def test_as_completed_times_out(process_executor: ProcessExecutor) -> None:
    future = process_executor.submit(sleep_then_return, 3.0)
    with pytest.raises(TimeoutError):
        list(process_executor.as_completed([future], timeout=0.2))
    assert future.result(timeout=60) == 3.0


@pytest.mark.parametrize("backend", ["process", "dask"])
def test_workers_are_reused_across_tasks(backend: str, request) -> None:
    executor = request.getfixturevalue(f"{backend}_executor")
    results = [f.result(timeout=60) for f in executor.map(use_cached_model, range(16))]
    pids = {pid for pid, _, _ in results}
    # At most one process per worker ran the 16 tasks: no process per task.
    assert len(pids) <= WORKERS
    # Each process loaded its "model" exactly once although it ran several tasks.
    assert all(loads == 1 for _, loads, _ in results)
    assert max(tasks for _, _, tasks in results) >= 16 // WORKERS
    assert os.getpid() not in pids  # really ran in worker processes


def test_serial_runs_in_this_process(serial_executor: SerialExecutor) -> None:
    future = serial_executor.submit(os.getpid)
    assert future.result() == os.getpid()


def test_map_of_nothing_is_empty(executor: Executor) -> None:
    assert executor.map(square_plus_offset, []) == []
    assert list(executor.as_completed([], timeout=1)) == []


def test_make_executor_reads_params_section() -> None:
    config = load_config(ExecutorConfig, {"backend": "serial", "workers": 3}, where="executor")
    executor = make_executor(config)
    assert isinstance(executor, SerialExecutor)
    assert executor.submit(square_plus_offset, 2).result() == 4


def test_config_rejects_unknown_backend_and_keys() -> None:
    with pytest.raises(ConfigError, match="backend"):
        load_config(ExecutorConfig, {"backend": "mpi"}, where="executor")
    with pytest.raises(ConfigError, match="partiton"):
        load_config(ExecutorConfig, {"slurm": {"partiton": "gpu"}}, where="executor")


def test_process_executor_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="workers"):
        ProcessExecutor(0)


def test_slurm_parameters_follow_config() -> None:
    config = load_config(
        SlurmConfig,
        {
            "partition": "gpu",
            "time_min": 1,
            "gpus_per_node": 2,
            "mem_gb": 8,
            "additional_parameters": {"qos": "high"},
        },
    )
    params = slurm_parameters(config)
    assert params["slurm_partition"] == "gpu"
    assert params["timeout_min"] == 1
    assert params["gpus_per_node"] == 2
    assert params["mem_gb"] == 8.0
    # The timeout warning must come before the end of a 1-minute limit.
    assert 0 < params["slurm_signal_delay_s"] < 60
    assert params["slurm_additional_parameters"] == {"requeue": True, "qos": "high"}
    # No GPU request at all when none is wanted (clusters without GRES reject --gpus-per-node=0).
    assert "gpus_per_node" not in slurm_parameters(SlurmConfig())
    assert "slurm_partition" not in slurm_parameters(SlurmConfig())
    with pytest.raises(ValueError, match="additional_parameters"):
        slurm_parameters(SlurmConfig(additional_parameters=["--qos=high"]))  # type: ignore[arg-type]


ORPHAN_SCRIPT = """
import os, sys
from pipeline.executors import ProcessExecutor
executor = ProcessExecutor(2)
pids = sorted({executor.submit(os.getpid).result() for _ in range(8)} | {executor.submit(os.getpid).result()})
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()  # killed while waiting here, the pool still open
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting to be reaped is gone for our purpose
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_process_workers_exit_when_their_parent_is_killed() -> None:
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT], cwd=root, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers and all(_alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)  # no cleanup runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "pool workers outlived their killed parent"
    finally:
        parent.kill()
