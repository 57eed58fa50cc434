"""The melody stage in the shard runner: outputs, bad input, parallel == serial, missing weights."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.config import ConfigError
from pipeline.executors import ExecutorConfig, make_executor
from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.reader import StageStore
from pipeline.runner import ERRORS_FILENAME, run_stage
from pipeline.stage import create_stage
from pipeline.store import list_shards
from stages.melody import MelodyExtractor
from stages.melody.constants import JASCO_LOWEST_MIDI, SAMPLE_RATE, UNVOICED_INDEX, WEIGHTS_ENV
from tests.test_melody_support import synth_melody, weights_dir  # noqa: F401 (fixture)

SHARDING = ShardingConfig(tracks_per_shard=2)


def test_registered_stage_and_declared_features(weights_dir):
    stage = create_stage("melody", {"weights_dir": str(weights_dir)})
    assert isinstance(stage, MelodyExtractor)
    assert (stage.sample_rate, stage.channels) == (SAMPLE_RATE, 1)
    specs = {s.name: s for s in stage.features()}
    assert specs["semitone_salience"].dtype == "float16" and specs["semitone_salience"].shape == (None, 53)
    assert specs["melody_index"].dtype == "int16" and specs["melody_index"].frame_rate == 50.0
    with pytest.raises(ConfigError, match="unknown key"):
        create_stage("melody", {"treshold": 0.4})
    with pytest.raises(ConfigError, match="not one of"):
        create_stage("melody", {"model": "drums"})


def test_short_silent_and_stereo_input(weights_dir):
    stage = create_stage("melody", {"weights_dir": str(weights_dir)})
    for n_samples in (1, 300):
        out = stage.extract(np.full((1, n_samples), 0.1, np.float32), SAMPLE_RATE)
        assert out["melody_index"].shape == (1,) and out["semitone_salience"].shape == (1, 53)
    silent = stage.extract(np.zeros((1, SAMPLE_RATE), np.float32), SAMPLE_RATE)
    assert (silent["melody_index"] == UNVOICED_INDEX).all() and silent["voiced_fraction"] == 0.0
    # stereo at 44.1 kHz through the pure API: downmixed and resampled, A4 = MIDI 69
    audio, _ = synth_melody([(69, 1.0)], sr=44100)
    out = stage.extract(np.repeat(audio, 2, axis=0), 44100)
    assert out["melody_index"].shape == (50,)
    assert np.mean(out["melody_index"][5:-5] == 69 - JASCO_LOWEST_MIDI) > 0.9


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, weights_dir):
    """5 short melodies (mixed rates/channels) and one file truncated after manifesting."""
    root = tmp_path_factory.mktemp("melody_stage")
    audio_dir = root / "audio"
    audio_dir.mkdir()
    for i in range(5):
        sr = (22050, 32000, 44100)[i % 3]
        audio, _ = synth_melody([(60 + 2 * i, 0.5), (67 + i, 0.4)], sr=sr, gap=0.1)
        sf.write(audio_dir / f"tune{i}.flac", np.repeat(audio, 1 + i % 2, axis=0).T, sr)
    table, rejects = build_manifest([audio_dir])
    manifest = root / "manifest.parquet"
    write_manifest(table, rejects, manifest)
    victim = audio_dir / "tune3.flac"
    victim.write_bytes(victim.read_bytes()[:300])
    params = {"weights_dir": str(weights_dir), "threads": 1}
    report = run_stage("melody", params, manifest, root / "serial", SHARDING, progress=False)
    return root, manifest, params, report


def test_serial_run_outputs_and_error_table(corpus):
    root, _, _, report = corpus
    assert report.ok and report.shards == 3 and report.track_errors == 1
    errors = pq.read_table(root / "serial" / ERRORS_FILENAME).to_pylist()
    assert len(errors) == 1 and errors[0]["path"].endswith("tune3.flac")
    assert errors[0]["error_type"] in ("corrupt", "truncated") and "tune3.flac" in errors[0]["reason"]
    store = StageStore(root / "serial")
    assert len(store) == 4
    for track_id in store.track_ids():
        row = store.get(track_id)
        i = int(row["path"].split("tune")[1][0])
        assert row["semitone_salience"].shape == (55, 53) and row["melody_index"].shape == (55,)  # 1.1 s
        # first note (0.5 s = frames 0..24): 60 + 2i -> index 17 + 2i
        assert np.mean(row["melody_index"][3:22] == 60 + 2 * i - JASCO_LOWEST_MIDI) > 0.9


def test_parallel_equals_serial(corpus):
    root, manifest, params, _ = corpus
    with make_executor(ExecutorConfig(backend="process", workers=2)) as executor:
        report = run_stage("melody", params, manifest, root / "process", SHARDING, executor=executor, progress=False)
    assert report.ok and report.written == 3
    serial = {p.name: p.read_bytes() for p in list_shards(root / "serial")}
    assert {p.name: p.read_bytes() for p in list_shards(root / "process")} == serial


def test_missing_weights_fail_the_shard_with_a_clear_message(corpus, tmp_path, monkeypatch):
    _, manifest, _, _ = corpus
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    report = run_stage("melody", {"weights_dir": str(tmp_path)}, manifest, tmp_path / "out", SHARDING, progress=False)
    assert not report.ok and len(report.failed_shards) == 3
    message = next(iter(report.failed_shards.values()))
    assert "multif0.h5" in message and "fetch-weights" in message and str(tmp_path) in message
