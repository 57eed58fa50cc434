"""The shard runner on the serial executor: outputs, resume, per-track errors, stale params; the
stage registry."""

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.reader import StageStore
from pipeline.runner import ERRORS_FILENAME, run_stage
from pipeline.shard_task import cached_stage
from pipeline.stage import available_stages, get_stage_class, stage_target
from pipeline.store import list_shards
from stages.loudness import frame_rms_db


def _tone(path, seconds, sr=22050, amplitude=0.5, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    wave = (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(path, np.stack([wave] * channels, axis=1), sr)


@pytest.fixture
def corpus(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(7):
        _tone(audio / f"tone{i}.wav", 0.5 + 0.25 * i, amplitude=0.1 * (i + 1), channels=1 + i % 2)
    manifest = tmp_path / "m.parquet"
    table, rejects = build_manifest([audio])
    write_manifest(table, rejects, manifest)
    return tmp_path, manifest


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in list_shards(folder)}


def test_run_writes_shards_and_resume_skips_complete(corpus):
    root, manifest = corpus
    out = root / "out"
    report = run_stage("loudness", {}, manifest, out, ShardingConfig(tracks_per_shard=3), progress=False)
    assert report.ok and report.shards == 3 and report.written == 3 and report.track_errors == 0
    store = StageStore(out)
    assert len(store) == 7 and store.frame_rate == 50.0
    row = store.get(store.track_ids()[0])
    assert row["rms_db"].dtype == np.float32 and row["rms_db"].ndim == 1
    before = _snapshot(out)

    again = run_stage("loudness", {}, manifest, out, ShardingConfig(tracks_per_shard=3), progress=False)
    assert again.skipped == 3 and again.written == 0
    assert _snapshot(out) == before  # untouched: same bytes, same mtimes

    # one shard lost (e.g. deleted by hand): only that one is recomputed, byte-identical
    victim = list_shards(out)[1]
    data = victim.read_bytes()
    victim.unlink()
    third = run_stage("loudness", {}, manifest, out, ShardingConfig(tracks_per_shard=3), progress=False)
    assert third.written == 1 and third.skipped == 2 and victim.read_bytes() == data


def test_changed_params_recompute_everything(corpus):
    root, manifest = corpus
    out = root / "out"
    run_stage("loudness", {}, manifest, out, ShardingConfig(tracks_per_shard=4), progress=False)
    report = run_stage("loudness", {"frame_rate": 25.0}, manifest, out, ShardingConfig(tracks_per_shard=4), progress=False)
    assert report.written == 2 and report.skipped == 0
    assert StageStore(out).frame_rate == 25.0
    # a smaller plan removes shards that no longer belong to it
    report = run_stage("loudness", {"frame_rate": 25.0}, manifest, out, ShardingConfig(tracks_per_shard=7), progress=False)
    assert len(list_shards(out)) == 1


def test_bad_track_is_recorded_without_losing_the_shard(corpus):
    root, manifest = corpus
    out = root / "out"
    table = pq.read_table(manifest)
    victim = table.column("path")[2].as_py()
    with open(victim, "r+b") as handle:  # corrupt after the manifest was built
        handle.seek(0)
        handle.write(b"\0" * 64)
    report = run_stage("loudness", {}, manifest, out, ShardingConfig(tracks_per_shard=4), progress=False)
    assert report.ok and report.track_errors == 1
    store = StageStore(out)
    assert len(store) == 6
    errors = store.errors().to_pylist()
    assert len(errors) == 1 and victim in errors[0]["reason"] and errors[0]["shard"] == 0
    assert pq.read_table(out / ERRORS_FILENAME).num_rows == 1
    # the error is final for this input: a plain re-run skips; --retry-errors recomputes that shard only
    assert run_stage("loudness", {}, manifest, out, ShardingConfig(tracks_per_shard=4), progress=False).written == 0
    retry = run_stage("loudness", {}, manifest, out, ShardingConfig(tracks_per_shard=4), retry_errors=True, progress=False)
    assert retry.written == 1 and retry.skipped == 1


def test_unknown_stage_param_is_rejected_before_work(corpus):
    root, manifest = corpus
    with pytest.raises(ValueError, match="unknown key"):
        run_stage("loudness", {"frame_rte": 25}, manifest, root / "out", progress=False)
    assert not list_shards(root / "out")


def test_stage_is_built_once_per_process():
    first = cached_stage("loudness", {"frame_rate": 40.0})
    assert cached_stage("loudness", {"frame_rate": 40.0}) is first
    assert cached_stage("loudness", {"frame_rate": 20.0}) is not first


def test_builtin_stages_register_themselves_by_name():
    from stages import BUILTIN_STAGES

    assert set(BUILTIN_STAGES) <= set(available_stages())
    for name, target in BUILTIN_STAGES.items():
        assert stage_target(name) == target and get_stage_class(name).name == name


def _fresh_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_installed_stages_are_found_without_importing_them():
    """A library caller (or a worker) that never imports ``stages`` still builds one by name: the
    ``chordflow.stages`` entry point names the package that registers them."""
    code = ("import sys; from pipeline.stage import create_stage; assert 'stages' not in sys.modules; "
            "print(type(create_stage('loudness')).__module__)")
    assert _fresh_python(code) == "stages.loudness"


def test_a_name_registered_by_hand_wins_over_discovered_stages():
    code = ("from pipeline.stage import register_stage, stage_target; "
            "register_stage('loudness', 'tests.stage_helpers:CountingExtractor'); "
            "print(stage_target('chords'), stage_target('loudness'))")  # 'chords' loads the providers
    assert _fresh_python(code) == "stages.chords:ChordsExtractor tests.stage_helpers:CountingExtractor"


def test_an_unknown_stage_names_the_registered_ones():
    with pytest.raises(KeyError, match="unknown stage 'nope'; available: chords, drums, latents, loudness"):
        stage_target("nope")


def test_frame_rms_counts_and_levels():
    sr, fr = 22050, 50.0
    samples = np.full((1, sr), 0.5, dtype=np.float32)
    levels = frame_rms_db(samples, sr, fr)
    assert levels.shape == (50,)
    np.testing.assert_allclose(levels, 20 * np.log10(0.5), atol=1e-4)
    assert frame_rms_db(np.zeros((2, 441)), sr, fr).tolist() == [-120.0] * 1
