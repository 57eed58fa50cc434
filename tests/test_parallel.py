"""Parallel == serial: the shard runner gives byte-identical shards on every executor."""

import os

import numpy as np
import pytest
import soundfile as sf

from pipeline import stage as stage_registry
from pipeline.executors import ExecutorConfig, SlurmConfig, make_executor
from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.runner import run_stage
from pipeline.stage import register_stage
from pipeline.store import list_shards
from tests.stage_helpers import COUNTING_STAGE

SHARDING = ShardingConfig(tracks_per_shard=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    audio = root / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        sr = (8000, 22050, 44100)[i % 3]
        sf.write(audio / f"noise{i}.flac", (0.2 * rng.standard_normal((int(sr * (0.3 + 0.1 * i)), 1 + i % 2))).astype(np.float32), sr)
    table, rejects = build_manifest([audio])
    manifest = root / "m.parquet"
    write_manifest(table, rejects, manifest)
    # corrupt one file after manifesting so one shard carries a track error
    victim = sorted(audio.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:200])
    serial_out = root / "serial"
    report = run_stage("loudness", {}, manifest, serial_out, SHARDING, progress=False)
    assert report.ok and report.track_errors == 1 and report.shards == 5
    return root, manifest, {p.name: p.read_bytes() for p in list_shards(serial_out)}


def _run_on(backend, root, manifest, **kw):
    out = root / backend
    cfg = ExecutorConfig(backend=backend, workers=2, **kw)
    with make_executor(cfg) as executor:
        report = run_stage("loudness", {}, manifest, out, SHARDING, executor=executor, progress=False)
    assert report.ok, report.failed_shards
    return {p.name: p.read_bytes() for p in list_shards(out)}


@pytest.mark.parametrize("backend", ["process", "dask"])
def test_local_parallel_equals_serial(corpus, backend):
    root, manifest, serial = corpus
    assert _run_on(backend, root, manifest) == serial


@pytest.mark.slurm
def test_slurm_equals_serial(corpus, slurm_cluster):
    root, manifest, serial = corpus
    slurm = SlurmConfig(folder=str(root / "submitit"), time_min=5, array_parallelism=4)
    assert _run_on("slurm", root, manifest, slurm=slurm) == serial


def test_heavy_setup_runs_once_per_worker(corpus):
    root, manifest, _ = corpus
    log_path = root / "setups.log"
    with make_executor(ExecutorConfig(backend="process", workers=2)) as executor:
        report = run_stage(COUNTING_STAGE, {"log_path": str(log_path)}, manifest, root / "counting", SHARDING,
                           executor=executor, progress=False)
    assert report.written == 5
    pids = log_path.read_text().split()
    # at most one setup per worker process, never one per shard, never in the submitting process
    assert 1 <= len(pids) == len(set(pids)) <= 2
    assert str(os.getpid()) not in pids


def test_a_stage_registered_only_here_runs_on_spawned_workers(corpus, monkeypatch):
    """Spawned workers never see this process's registry: each job carries the stage's target."""
    root, manifest, _ = corpus
    monkeypatch.setattr(stage_registry, "_REGISTRY", dict(stage_registry._REGISTRY))
    register_stage("counting-here-only", COUNTING_STAGE)
    with make_executor(ExecutorConfig(backend="process", workers=2)) as executor:
        report = run_stage("counting-here-only", {"log_path": str(root / "here.log")}, manifest, root / "here",
                           SHARDING, executor=executor, progress=False)
    assert report.ok and report.written == 5, report.failed_shards
