"""SlurmExecutor against the real single-node cluster (``slurm/cluster.sh start``).

Skipped when ``sinfo`` does not answer, unless ``CHORDFLOW_REQUIRE_SLURM=1`` (CI), which turns that
into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from pipeline.executors import ExecutorTaskError, SlurmConfig
from pipeline.slurm_executor import SlurmExecutor

pytestmark = pytest.mark.slurm

# Jobs run `python -m submitit.core._submit` without this test folder on sys.path: ship the test
# functions by value instead of by module name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

LONG_SLEEP_S = 300  # "runs until interrupted": far longer than any test waits
WAIT_S = 120  # upper bound for any single wait on the cluster


def square_or_fail(x: int) -> int:
    if x == 2:
        raise ValueError(f"item {x} is corrupt")
    return x * x


def sleep_after_marker(marker: str, seconds: float) -> float:
    Path(marker).write_text(os.environ.get("SLURM_JOB_ID", ""))
    time.sleep(seconds)
    return seconds


def resume_from_marker(folder: str) -> dict:
    """First run: leave a marker and hang until interrupted. Second run: finish from the marker."""
    marker = Path(folder) / "first_run"
    if marker.exists():
        return {
            "resumed": True,
            "first_run_job": marker.read_text(),
            "restart_count": os.environ.get("SLURM_RESTART_COUNT", "0"),
        }
    marker.write_text(os.environ.get("SLURM_JOB_ID", ""))
    time.sleep(LONG_SLEEP_S)
    return {"resumed": False}


def make_executor(folder: Path, **overrides) -> SlurmExecutor:
    settings = dict(
        folder=str(folder),
        time_min=10,
        mem_gb=0.5,
        poll_interval_s=0.2,
        sacct_interval_s=1.0,
        result_grace_s=2.0,
    )
    settings.update(overrides)
    return SlurmExecutor(SlurmConfig(**settings))


@pytest.fixture
def executor(slurm_cluster, tmp_path: Path) -> SlurmExecutor:
    with make_executor(tmp_path / "submitit") as slurm:
        yield slurm


def wait_for_file(path: Path, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared: the task did not start"
        time.sleep(0.2)


@pytest.mark.timeout(WAIT_S)
def test_array_of_four_returns_results_in_order(executor: SlurmExecutor) -> None:
    futures = executor.map(square_or_fail, [0, 1, 3, 4])
    # One array job, one array task per item.
    array_ids = {f.job_id.split("_")[0] for f in futures}
    assert len(array_ids) == 1
    assert [f.job_id.split("_")[1] for f in futures] == ["0", "1", "2", "3"]
    assert len(list(executor.as_completed(futures, timeout=WAIT_S))) == 4
    assert [f.result(timeout=WAIT_S) for f in futures] == [0, 1, 9, 16]


@pytest.mark.timeout(WAIT_S)
def test_more_tasks_than_max_array_size_go_in_several_arrays(slurm_cluster, tmp_path: Path) -> None:
    with make_executor(tmp_path / "submitit", max_array_size=2) as slurm:
        futures = slurm.map(square_or_fail, [0, 1, 3, 4, 5])
        assert len({f.job_id.split("_")[0] for f in futures}) == 3  # arrays of 2, 2 and 1 tasks
        assert [f.result(timeout=WAIT_S) for f in futures] == [0, 1, 9, 16, 25]


@pytest.mark.timeout(WAIT_S)
def test_failing_task_names_job_and_logs_and_keeps_others(executor: SlurmExecutor) -> None:
    futures = executor.map(square_or_fail, [0, 1, 2, 3])
    with pytest.raises(ExecutorTaskError) as caught:
        futures[2].result(timeout=WAIT_S)
    error = caught.value
    assert error.job_id == futures[2].job_id
    assert error.state == "FAILED"
    assert f"SLURM job {futures[2].job_id} raised ValueError: item 2 is corrupt" in str(error)
    assert str(error.stderr) in str(error) and str(error.stdout) in str(error)
    assert "item 2 is corrupt" in error.stderr.read_text()
    assert [futures[i].result(timeout=WAIT_S) for i in (0, 1, 3)] == [0, 1, 9]


@pytest.mark.timeout(WAIT_S)
def test_cancelled_task_is_reported_not_awaited_forever(executor: SlurmExecutor, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    quick = executor.submit(sleep_after_marker, str(tmp_path / "quick"), 0.0)
    doomed = executor.submit(sleep_after_marker, str(marker), LONG_SLEEP_S)
    wait_for_file(marker)
    subprocess.run(["scancel", doomed.job_id], check=True, timeout=30)
    started = time.monotonic()
    with pytest.raises(ExecutorTaskError) as caught:
        doomed.result(timeout=WAIT_S)
    assert time.monotonic() - started < 60
    assert caught.value.state is not None and caught.value.state.startswith("CANCELLED")
    assert f"SLURM job {doomed.job_id} ended without a result (state CANCELLED" in str(caught.value)
    assert quick.result(timeout=WAIT_S) == 0.0


@pytest.mark.timeout(WAIT_S)
def test_cancelled_array_element_leaves_the_rest(executor: SlurmExecutor, tmp_path: Path) -> None:
    markers = [tmp_path / f"task{i}" for i in range(3)]
    durations = [0.0, LONG_SLEEP_S, 0.0]
    futures = executor.map(_sleep_item, [(str(m), d) for m, d in zip(markers, durations)])
    wait_for_file(markers[1])
    futures[1].cancel()
    done = list(executor.as_completed(futures, timeout=WAIT_S))
    assert len(done) == 3
    with pytest.raises(ExecutorTaskError, match="CANCELLED"):
        futures[1].result(timeout=WAIT_S)
    assert futures[0].result() == 0.0 and futures[2].result() == 0.0


def _sleep_item(item: tuple[str, float]) -> float:
    return sleep_after_marker(*item)


def _assert_resumed(future) -> None:
    """The future gives the second run's result, and that run is the same job, restarted once."""
    result = future.result(timeout=WAIT_S)
    assert result["resumed"] is True
    assert result["first_run_job"] == future.job_id
    assert result["restart_count"] == "1"


def test_empty_map_submits_nothing(executor: SlurmExecutor) -> None:
    assert executor.map(square_or_fail, []) == []


@pytest.mark.timeout(WAIT_S)
def test_checkpointable_task_requeued_on_preemption_signal(executor: SlurmExecutor, tmp_path: Path) -> None:
    # USR2 is what SLURM sends before a timeout or a preemption: submitit checkpoints the task
    # (our Checkpointable wrapper) and requeues it; the rerun finds the first run's marker.
    future = executor.submit(resume_from_marker, str(tmp_path))
    wait_for_file(tmp_path / "first_run")
    subprocess.run(["scancel", "--signal=USR2", future.job_id], check=True, timeout=30)
    _assert_resumed(future)
    assert "Requeued job" in future.stdout_path.read_text()


@pytest.mark.timeout(WAIT_S)
def test_task_requeued_by_scontrol_finishes(executor: SlurmExecutor, tmp_path: Path) -> None:
    future = executor.submit(resume_from_marker, str(tmp_path))
    wait_for_file(tmp_path / "first_run")
    subprocess.run(["scontrol", "requeue", future.job_id], check=True, timeout=30)
    _assert_resumed(future)


@pytest.mark.slow
@pytest.mark.timeout(WAIT_S + 60)
def test_task_hitting_its_time_limit_is_requeued(slurm_cluster, tmp_path: Path) -> None:
    # time_min=1: SLURM itself signals the task 30 s in, submitit requeues it, the rerun finishes.
    with make_executor(tmp_path / "submitit", time_min=1) as executor:
        future = executor.submit(resume_from_marker, str(tmp_path))
        _assert_resumed(future)
        assert "this job is timed-out" in future.stdout_path.read_text()
