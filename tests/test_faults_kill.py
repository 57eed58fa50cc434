"""Kill -9 at random points: after a re-run the shards are byte-identical to an undisturbed run.

Each trial runs a real stage (``loudness``, ``chords``) in a subprocess (the chords trials through
the real ``chordflow chords extract`` command, the others through the same runner entry point
without the full CLI's import cost, see :func:`tests.fault_helpers.stage_argv`) in its own
process group, SIGKILLs it (the whole group, or one Dask worker) once or twice at seeded random
points (a delay after launch, after the k-th shard, while a shard is being written), checks that
every shard visible right after the kill is whole, re-runs to completion and compares with the
undisturbed run: same bytes, every track exactly once, no temp file left. The SLURM trials are in
``test_faults_slurm.py``. Set ``CHORDFLOW_FAULT_SEED`` to replay other points; failures print
the seed and every kill point.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.fault_helpers import (
    assert_matches_reference,
    assert_visible_shards_whole,
    make_manifest,
    RUN_TIMEOUT_S,
    random_kill_point,
    run_to_end,
    shard_bytes,
    stage_argv,
    start,
    strike,
    tail,
    write_corpus,
    write_params,
)

SEED = int(os.environ.get("CHORDFLOW_FAULT_SEED", "8"))
#: Kills before the final, undisturbed run of one trial (1 or 2).
MAX_KILLS_PER_TRIAL = 2


class StageSetup:
    """A corpus, its manifest (one file corrupted afterwards), params and the undisturbed shards."""

    def __init__(self, root: Path, stage: str, n_tracks: int, tracks_per_shard: int, executor: str,
                 seconds: tuple[float, float], full_cli: bool = False) -> None:
        self.root, self.stage, self.executor, self.tracks_per_shard = root, stage, executor, tracks_per_shard
        self.full_cli = full_cli
        paths = write_corpus(root / "audio", n_tracks, seed=SEED, seconds=seconds)
        self.manifest = make_manifest(root / "audio", root / "manifest.parquet")
        paths[3].write_bytes(paths[3].read_bytes()[:300])  # a track error recorded in one shard
        self.params = write_params(root / "params.yaml", stage, backend=executor, workers=2)
        self.shards = -(-n_tracks // tracks_per_shard)
        started = time.monotonic()
        out = root / "reference"
        code = run_to_end(self.argv(out), root, root / "reference.log")
        self.undisturbed_s = time.monotonic() - started
        assert code == 0, tail(root / "reference.log")
        self.reference = shard_bytes(out)
        assert len(self.reference) == self.shards

    def argv(self, out: Path) -> list[str]:
        return stage_argv(self.stage, self.manifest, out, self.params, self.executor, 2, self.tracks_per_shard,
                          self.full_cli)


def run_kill_trials(setup: StageSetup, trials: int, seed: int, victim=None) -> list[str]:
    """``trials`` trials of 1-2 kills then a completing re-run; returns one line per kill."""
    rng = np.random.default_rng(seed)
    lines = []
    for trial in range(trials):
        out = setup.root / f"trial{trial}"
        log = setup.root / f"trial{trial}.log"
        outcomes = []
        for _ in range(int(rng.integers(1, MAX_KILLS_PER_TRIAL + 1))):
            proc = start(setup.argv(out), setup.root, log)
            point = random_kill_point(rng, setup.shards, startup_s=setup.undisturbed_s)
            outcomes.append(strike(proc, out, point, victim))
            if victim is not None:  # the run goes on without the victim, then ends by itself
                outcomes[-1].exit_code = proc.wait(timeout=RUN_TIMEOUT_S)
            context = f"seed {seed} trial {trial}: {'; '.join(map(str, outcomes))}"
            assert_visible_shards_whole(out, context)
        code = run_to_end(setup.argv(out), setup.root, log)
        assert code == 0, f"{context}: re-run failed\n{tail(log)}"
        assert_matches_reference(out, setup.reference, setup.manifest, context)
        lines += [f"trial {trial}: {o}" for o in outcomes]
    print(f"\n{setup.stage}/{setup.executor} seed {seed}:\n  " + "\n  ".join(lines))
    return lines


#: What a worker-kill trial reports when the run ended before any worker could be killed.
NO_WORKER_KILLED = "no worker killed (the run ended first)"


def live_kills(lines: list[str]) -> int:
    return sum("live=True" in line and NO_WORKER_KILLED not in line for line in lines)


@pytest.fixture(scope="module")
def loudness_process(tmp_path_factory) -> StageSetup:
    return StageSetup(tmp_path_factory.mktemp("kill_loudness"), "loudness", n_tracks=24, tracks_per_shard=2,
                      executor="process", seconds=(2.0, 6.0))


@pytest.mark.timeout(300)
def test_kill_process_pool_runs_of_loudness(loudness_process: StageSetup) -> None:
    lines = run_kill_trials(loudness_process, trials=8, seed=SEED)
    # The points are drawn over the whole run; most must land while it is still going.
    assert live_kills(lines) >= 6, lines


@pytest.mark.timeout(300)
def test_kill_process_pool_runs_of_chords(tmp_path_factory) -> None:
    setup = StageSetup(tmp_path_factory.mktemp("kill_chords"), "chords", n_tracks=8, tracks_per_shard=1,
                       executor="process", seconds=(2.0, 4.0), full_cli=True)
    lines = run_kill_trials(setup, trials=3, seed=SEED + 1)
    assert live_kills(lines) >= 2, lines


def kill_one_dask_worker(proc) -> str:
    """SIGKILL one of the LocalCluster's worker processes (its nanny starts a new one)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # the run finished its last shards before a worker was found
            return NO_WORKER_KILLED
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return NO_WORKER_KILLED
        workers = [child for child in children if "spawn_main" in " ".join(_cmdline(child))]
        if workers:
            victim = random.Random(proc.pid).choice(workers)
            victim.kill()
            return f"dask worker pid {victim.pid}"
        time.sleep(0.01)
    raise AssertionError("no dask worker process appeared")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


@pytest.fixture(scope="module")
def loudness_dask(tmp_path_factory) -> StageSetup:
    return StageSetup(tmp_path_factory.mktemp("kill_dask"), "loudness", n_tracks=16, tracks_per_shard=2,
                      executor="dask", seconds=(2.0, 6.0))


@pytest.mark.timeout(300)
def test_kill_dask_worker_mid_run(loudness_dask: StageSetup) -> None:
    lines = run_kill_trials(loudness_dask, trials=3, seed=SEED + 2, victim=kill_one_dask_worker)
    assert live_kills(lines) >= 2, lines


@pytest.mark.timeout(300)
def test_kill_whole_dask_run(loudness_dask: StageSetup) -> None:
    lines = run_kill_trials(loudness_dask, trials=2, seed=SEED + 3)
    assert live_kills(lines) >= 1, lines
