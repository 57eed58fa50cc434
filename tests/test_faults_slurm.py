"""Faults of SLURM-run stages on the real local cluster (``slurm/cluster.sh start``).

* kill -9 of an array task's process, ``scancel --signal=KILL`` of an array task, and kill -9 of
  the submitting process (its tasks go on as orphans while the stage is re-run): the re-run
  submits exactly the shards that are missing and ends byte-identical to an undisturbed run;
* a task that raises is reported with its job id and log paths, the other shards are kept, and
  the re-run submits that one shard only;
* array tasks signalled for preemption (USR2, what SLURM sends before a time limit or a
  preemption) or requeued by ``scontrol requeue`` in the middle of a shard are requeued and finish.

The executor-level versions of these (and the slow real time-limit test) are in ``test_slurm.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from pipeline.executors import SlurmConfig
from pipeline.slurm_executor import SlurmExecutor
from pipeline.planning import ShardingConfig, plan_from_manifest
from pipeline.manifest import read_manifest
from pipeline.runner import ERRORS_FILENAME, run_stage
from pipeline.shard_task import stage_info
from pipeline.stage import create_stage
from pipeline.store import shard_filename, shard_is_complete
from tests.fault_helpers import (
    FAIL_TRACK_ENV,
    HELD_STAGE,
    HOLD_ENV,
    MARKER_DIR_ENV,
    REPO_ROOT,
    KillPoint,
    assert_matches_reference,
    assert_visible_shards_whole,
    kill_group,
    make_manifest,
    shard_bytes,
    shard_names,
    stage_argv,
    start,
    tail,
    write_corpus,
    write_params,
)

pytestmark = pytest.mark.slurm

SEED = int(os.environ.get("CHORDFLOW_FAULT_SEED", "8"))
TRACKS_PER_SHARD = 2
N_TRACKS = 8
SLURM_SETTINGS = dict(time_min=5, mem_gb=0.5, array_parallelism=2, poll_interval_s=0.2, sacct_interval_s=1.0,
                      result_grace_s=2.0)
WAIT_S = 180


class CountingSlurmExecutor(SlurmExecutor):
    """Counts the tasks that the runner submits."""

    submitted = 0

    def map(self, fn, items):
        items = list(items)
        self.submitted += len(items)
        return super().map(fn, items)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, slurm_cluster):
    root = tmp_path_factory.mktemp("slurm_faults")
    write_corpus(root / "audio", N_TRACKS, seed=SEED, seconds=(2.0, 5.0))
    manifest = make_manifest(root / "audio", root / "manifest.parquet")
    references = {}
    for stage in ("loudness", HELD_STAGE):
        out = root / f"reference-{stage.split(':')[-1]}"
        report = run_stage(stage, {}, manifest, out, ShardingConfig(TRACKS_PER_SHARD), progress=False)
        assert report.ok
        references[stage] = shard_bytes(out)
    return root, manifest, references


@pytest.fixture
def task_env(monkeypatch):
    """SLURM tasks inherit the submitter's environment: make ``tests`` importable there."""
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    return monkeypatch


def missing_shards(stage: str, manifest: Path, out: Path) -> int:
    info = stage_info(create_stage(stage, {}))
    plan = plan_from_manifest(read_manifest(manifest), ShardingConfig(TRACKS_PER_SHARD))
    return sum(not shard_is_complete(out / shard_filename(s.index), info, s.track_ids) for s in plan)


def rerun_counting(stage: str, manifest: Path, out: Path, folder: Path):
    with CountingSlurmExecutor(SlurmConfig(folder=str(folder), **SLURM_SETTINGS)) as executor:
        report = run_stage(stage, {}, manifest, out, ShardingConfig(TRACKS_PER_SHARD), executor=executor,
                           progress=False)
    return report, executor.submitted


def task_processes(folder: Path) -> list[psutil.Process]:
    """The running ``python -m submitit.core._submit <folder>`` processes of our array tasks."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "submitit.core._submit" in cmdline and str(folder) in cmdline and "srun" not in cmdline[0]:
            found.append(proc)
    return found


def task_id(proc: psutil.Process) -> str:
    env = proc.environ()
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


def our_jobs(folder: Path) -> list[str]:
    """Job ids in the queue whose batch script lives in ``folder`` (other users' jobs are left alone)."""
    listing = subprocess.run(["squeue", "-h", "-o", "%i %o"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in listing.splitlines() if str(folder) in line]


def wait_for_no_jobs(folder: Path, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while our_jobs(folder):
        assert time.monotonic() < deadline, f"jobs of {folder} still queued: {our_jobs(folder)}"
        time.sleep(0.5)


def wait_until_running(job: str, settle_s: float = 1.0, timeout_s: float = 30.0) -> None:
    """Wait until squeue says RUNNING, then ``settle_s``: a job that is still being set up on its
    node refuses signals ("Job can not be altered now")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
        if state == "RUNNING":
            time.sleep(settle_s)
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job} never RUNNING")


def kill_a_task(folder: Path, how: str, rng: np.random.Generator, wait_s: float = 60.0) -> str:
    """SIGKILL one running task (its process, or ``scancel --signal=KILL``); names what it killed."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        tasks = task_processes(folder)
        if tasks:
            victim = tasks[int(rng.integers(0, len(tasks)))]
            time.sleep(float(rng.uniform(0, 0.3)))  # somewhere in its start-up or its shard
            try:
                name = task_id(victim)
                if how == "scancel":
                    subprocess.run(["scancel", "--signal=KILL", name], check=True, timeout=30)
                else:
                    victim.kill()
            except (psutil.NoSuchProcess, KeyError):
                continue  # it finished in the meantime: pick again
            return f"task {name} by {how}"
        time.sleep(0.01)
    return ""


@pytest.mark.timeout(600)
def test_killed_tasks_and_submitter_then_rerun_submits_only_missing(corpus, task_env) -> None:
    root, manifest, references = corpus
    rng = np.random.default_rng(SEED)
    shards = -(-N_TRACKS // TRACKS_PER_SHARD)
    lines = []
    for trial, how in enumerate(["pid", "pid", "scancel", "submitter"]):
        out, folder, log = root / f"kill{trial}", root / f"submitit{trial}", root / f"kill{trial}.log"
        params = write_params(root / f"params{trial}.yaml", "loudness", backend="slurm", workers=2,
                              slurm={"folder": str(folder), **SLURM_SETTINGS})
        proc = start(stage_argv("loudness", manifest, out, params, "slurm", 2, TRACKS_PER_SHARD), root, log)
        point = KillPoint("after_shards", shards=int(rng.integers(0, shards)), delay_s=float(rng.uniform(0, 0.5)))
        deadline = time.monotonic() + WAIT_S
        while len(shard_names(out)) < point.shards and proc.poll() is None:
            assert time.monotonic() < deadline, f"trial {trial}: {point} not reached\n{tail(log)}"
            time.sleep(0.01)
        time.sleep(point.delay_s)
        if how == "submitter":
            victim = "submitting process group" if proc.poll() is None else ""
            kill_group(proc)
            code = None
        else:
            victim = kill_a_task(folder, how, rng)
            code = proc.wait(timeout=WAIT_S)
        context = f"seed {SEED} trial {trial}: {point}, killed {victim or 'nothing (run over)'}, exit {code}"
        assert_visible_shards_whole(out, context)
        missing = missing_shards("loudness", manifest, out)
        if code is not None:  # exit 1 and the task named in the error table, unless it had already finished
            failed = [r for r in pq.read_table(out / ERRORS_FILENAME).to_pylist() if r["error_type"] == "shard_failed"]
            assert (code, len(failed)) in ((0, 0), (1, 1)), f"{context}: {failed}\n{tail(log)}"
            assert all("stderr: " in r["reason"] for r in failed), f"{context}: {failed}"
        report, submitted = rerun_counting("loudness", manifest, out, folder)
        lines.append(f"{context}; {missing} shards missing, re-run submitted {submitted}")
        assert report.ok, f"{context}: {report.failed_shards}"
        if how != "submitter":  # orphans of a killed submitter may still be finishing shards
            assert submitted == missing, lines[-1]
        wait_for_no_jobs(folder)
        assert_matches_reference(out, references["loudness"], manifest, context)
    print("\n  " + "\n  ".join(lines))
    assert sum("exit 1" in line for line in lines) >= 1, lines  # at least one kill failed a live task


@pytest.mark.timeout(300)
def test_failed_task_is_reported_with_logs_and_rerun_submits_it_alone(corpus, task_env, tmp_path) -> None:
    root, manifest, references = corpus
    out, folder = tmp_path / "out", tmp_path / "submitit"
    failing = Path(read_manifest(manifest).column("path")[5].as_py()).stem
    task_env.setenv(FAIL_TRACK_ENV, failing)
    report, submitted = rerun_counting(HELD_STAGE, manifest, out, folder)
    assert submitted == 4 and list(report.failed_shards) == [2]
    message = report.failed_shards[2]
    assert "ExecutorTaskError" in message and "raised RuntimeError: injected task failure" in message
    stderr = Path(message.split("stderr: ")[1].splitlines()[0])
    assert stderr.is_file() and f"injected task failure while processing {failing}" in stderr.read_text()
    assert sorted(shard_names(out)) == [shard_filename(i) for i in (0, 1, 3)]  # the others are kept
    errors = pq.read_table(out / ERRORS_FILENAME).to_pylist()
    assert [(e["shard"], e["error_type"]) for e in errors] == [(2, "shard_failed")]
    assert str(stderr) in errors[0]["reason"]

    task_env.delenv(FAIL_TRACK_ENV)
    report, submitted = rerun_counting(HELD_STAGE, manifest, out, folder)
    assert report.ok and submitted == 1 and report.written == 1 and report.skipped == 3
    assert_matches_reference(out, references[HELD_STAGE], manifest, "after the re-run")
    assert pq.read_table(out / ERRORS_FILENAME).num_rows == 0


@pytest.mark.timeout(300)
def test_preempted_and_requeued_tasks_finish_their_shards(corpus, task_env, tmp_path) -> None:
    root, manifest, references = corpus
    out, folder, markers = tmp_path / "out", tmp_path / "submitit", tmp_path / "markers"
    markers.mkdir()
    task_env.setenv(MARKER_DIR_ENV, str(markers))
    task_env.setenv(HOLD_ENV, "6")  # each task holds in setup(), inside the shard task
    params = write_params(tmp_path / "params.yaml", HELD_STAGE, backend="slurm", workers=2,
                          slurm={"folder": str(folder), **SLURM_SETTINGS})
    log = tmp_path / "run.log"
    proc = start(stage_argv(HELD_STAGE, manifest, out, params, "slurm", 2, TRACKS_PER_SHARD), tmp_path, log)
    try:
        signalled = []
        deadline = time.monotonic() + WAIT_S
        for how in ("USR2", "scontrol requeue"):
            while True:  # the next task (first run) that is inside its shard task
                fresh = sorted(m.read_text().split() for m in markers.glob("*.0"))
                fresh = [entry for entry in fresh if entry[0] not in signalled]
                if fresh:
                    break
                assert time.monotonic() < deadline and proc.poll() is None, tail(log)
                time.sleep(0.05)
            job, pid = fresh[0]
            wait_until_running(job)
            if how == "USR2":
                # What SLURM sends before a time limit or a preemption (``--signal=USR2@...``).
                # Sent to the task's process itself: ``scancel --signal`` on an array task gets
                # "Job can not be altered now" answers and keeps re-sending for ~20 s, which can
                # kill the requeued run before submitit has installed its handler.
                os.kill(int(pid), signal.SIGUSR2)
            else:
                subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
            signalled.append(job)
        code = proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert code == 0, tail(log)
    restarted = sorted(m.read_text().split()[0] for m in markers.glob("*.1"))
    assert restarted == sorted(signalled), (restarted, signalled)
    preempted_log = next(m for m in markers.glob("*.0") if m.read_text().split()[0] == signalled[0]).stem
    assert "Requeued job" in (folder / f"{preempted_log}_0_log.out").read_text()
    wait_for_no_jobs(folder)
    assert_matches_reference(out, references[HELD_STAGE], manifest, f"tasks {signalled} requeued")
