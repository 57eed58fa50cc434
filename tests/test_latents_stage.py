"""The latents stage over a manifest: mix latents + drum-stem coarse latents, chunked == whole,
parallel == serial, idempotent re-runs, bad drums input as track errors, stats, CLI."""

import argparse
import json

import numpy as np
import pytest
import soundfile as sf

from music.chords import label_pitch_classes
from pipeline.corpus.tones import chord_tone
from pipeline.executors import ExecutorConfig, make_executor
from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.reader import StageStore
from pipeline.runner import run_stage
from pipeline.stage import FeatureSpec
from pipeline.store import StageInfo, TrackError, list_shards, write_shard
from stages.latents import LatentsExtractor, NormalisationStats, compute_stats, make_codec
from stages.latents.cli import add_cli

STAGE = "stages.latents:LatentsExtractor"
SHARDING = ShardingConfig(tracks_per_shard=2)
FAST = {"logspec_griffinlim": {"griffin_lim_iters": 8}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """5 mixes (various rates/channels/lengths), a hand-made drums stage folder with stems for
    all but the last track, and a manifest."""
    root = tmp_path_factory.mktemp("latents")
    audio, drums = root / "audio", root / "drums"
    (drums / "stems").mkdir(parents=True)
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i, chord in enumerate(["C", "Am", "F", "Em", "C"]):
        sr = (22050, 44100, 32000)[i % 3]
        mix = chord_tone(label_pitch_classes(chord), 1.0 + 0.4 * i, sr)
        mix += (0.02 * rng.standard_normal(len(mix))).astype(np.float32)
        sf.write(audio / f"clip_{i}.flac", np.stack([mix] * (1 + i % 2), axis=1), sr)
    table, rejects = build_manifest([audio])
    manifest = root / "m.parquet"
    write_manifest(table, rejects, manifest)
    track_ids, paths = table.column("track_id").to_pylist(), table.column("path").to_pylist()
    rows = []
    for track_id, path in zip(track_ids[:-1], paths[:-1]):
        info = sf.info(path)
        clicks = np.zeros(info.frames, dtype=np.float32)
        clicks[:: info.samplerate // 4] = 0.8  # four clicks a second
        sf.write(drums / "stems" / f"{track_id}.flac", clicks, info.samplerate)
        rows.append({"track_id": track_id, "path": path, "stem_path": f"stems/{track_id}.flac"})
    info = StageInfo("drums", "1", "hand-made", (FeatureSpec("stem_path", "string"),), {})
    write_shard(drums, 0, info, track_ids, rows, [TrackError(track_ids[-1], paths[-1], "test", "no stem")])
    return root, manifest, drums, track_ids


def _run(corpus, out, executor=None, **params):
    root, manifest, drums, _ = corpus
    section = {"drums_dir": str(drums), **FAST, **params}
    return run_stage(STAGE, section, manifest, root / out, SHARDING, executor=executor, progress=False)


@pytest.fixture(scope="module")
def serial(corpus):
    report = _run(corpus, "serial")
    assert report.ok and report.shards == 3
    return corpus[0] / "serial"


def test_shards_hold_float16_latents_at_the_codec_frame_rate(corpus, serial):
    _, _, drums, track_ids = corpus
    store = StageStore(serial)
    codec = make_codec("logspec_griffinlim", FAST["logspec_griffinlim"])
    assert store.frame_rate == codec.frame_rate == 50.0
    assert store.info.params["codec"] == "logspec_griffinlim"
    specs = {s.name: s for s in store.info.features}
    assert specs["latents"].shape == (None, codec.dim) and specs["drums_coarse"].shape == (None, codec.coarse_dim)
    assert len(store) == 4  # the track without a drum stem is a recorded error
    assert [e["track_id"] for e in store.errors().to_pylist()] == [track_ids[-1]]
    for track_id in store.track_ids():
        row = store.get(track_id)
        info = sf.info(row["path"])
        assert row["latents"].dtype == np.float16 and row["drums_coarse"].dtype == np.float16
        assert row["latents"].shape[0] == codec.n_frames(round(info.duration * codec.sample_rate))
        assert row["drums_coarse"].shape == (row["latents"].shape[0], codec.coarse_dim)
        stem, _ = __import__("pipeline.audio", fromlist=["load_audio"]).load_audio(
            drums / "stems" / f"{track_id}.flac", sample_rate=codec.sample_rate, channels=1)
        expected = codec.coarse(codec.encode(stem[0])).astype(np.float16)
        np.testing.assert_array_equal(row["drums_coarse"], expected)


def test_rerun_is_a_no_op_and_parallel_equals_serial(corpus, serial):
    shards = {p.name: p.read_bytes() for p in list_shards(serial)}
    again = _run(corpus, "serial")
    assert again.skipped == again.shards and again.written == 0
    with make_executor(ExecutorConfig(backend="process", workers=2)) as executor:
        report = _run(corpus, "process", executor=executor)
    assert report.ok
    assert {p.name: p.read_bytes() for p in list_shards(corpus[0] / "process")} == shards


def test_chunked_equals_whole():
    wav = chord_tone(label_pitch_classes("Am"), 7.3, 22050) + chord_tone(label_pitch_classes("F"), 7.3, 22050, octave=3)
    whole = LatentsExtractor.from_params({"chunk_seconds": 0})
    chunked = LatentsExtractor.from_params({"chunk_seconds": 1.0, "chunk_context_seconds": 0.05})
    a = whole.extract(wav[None], 22050)["latents"]
    b = chunked.extract(wav[None], 22050)["latents"]
    assert a.shape == b.shape == (whole.codec.n_frames(len(wav)), whole.codec.dim)
    np.testing.assert_array_equal(a, b)


def test_wrong_rate_and_unknown_codec_are_clear_errors():
    from stages.latents import CodecError

    stage = LatentsExtractor.from_params({})
    with pytest.raises(ValueError, match="22050 Hz"):
        stage.extract(np.zeros((1, 100), dtype=np.float32), 16000)
    with pytest.raises(CodecError, match="unknown codec 'mp3'"):
        LatentsExtractor.from_params({"codec": "mp3"})


def test_params_hash_ignores_other_backends_options():
    base = LatentsExtractor.from_params({}).params_hash
    assert LatentsExtractor.from_params({"encodec_24khz": {"checkpoint": "elsewhere.th"}}).params_hash == base
    assert LatentsExtractor.from_params({"logspec_griffinlim": {"coarse_pool": 4}}).params_hash != base


def test_stats_are_reproducible_and_correct(serial, tmp_path):
    store = StageStore(serial)
    first = compute_stats(serial, progress=False)
    first.save(tmp_path / "a.json")
    compute_stats(serial, progress=False).save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    values = np.concatenate([store.get(t)["latents"].astype(np.float64) for t in store.track_ids()])
    assert first.frames == len(values) and first.tracks == 4
    assert first.mean == pytest.approx(values.mean(), rel=1e-9)
    assert first.std == pytest.approx(values.std(), rel=1e-9)
    np.testing.assert_allclose(first.dim_mean, values.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(first.dim_std, values.std(axis=0), rtol=1e-9, atol=1e-12)
    loaded = NormalisationStats.load(tmp_path / "a.json")
    assert loaded == first
    for mode in ("global", "per_dim"):
        normalised = loaded.normalise(values, mode)
        np.testing.assert_allclose(loaded.denormalise(normalised, mode), values, rtol=1e-4, atol=1e-4)
    assert abs(loaded.normalise(values).mean()) < 1e-4 and loaded.normalise(values).std() == pytest.approx(1.0, rel=1e-4)
    subset = compute_stats(serial, store.track_ids()[:2], progress=False)
    assert subset.tracks == 2 and subset.frames < first.frames


def _cli(argv):
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_extract_stats_plot(corpus, tmp_path):
    root, manifest, drums, track_ids = corpus
    params = tmp_path / "params.yaml"
    params.write_text("latents:\n  logspec_griffinlim: {griffin_lim_iters: 8}\nexecutor: {backend: serial}\n")
    out = tmp_path / "features"
    code = _cli(["latents", "extract", "--manifest", str(manifest), "--out", str(out), "--params", str(params),
                 "--drums", str(drums), "--no-progress"])
    assert code == 0 and len(StageStore(out)) == 4
    assert {s.name for s in StageStore(out).info.features} == {"latents", "drums_coarse"}
    stats_path = tmp_path / "stats.json"
    assert _cli(["latents", "stats", "--features", str(out), "--out", str(stats_path), "--no-progress"]) == 0
    assert json.loads(stats_path.read_text())["tracks"] == 4
    png = tmp_path / "plot.png"
    audio = sorted((root / "audio").iterdir())[1]
    assert _cli(["latents", "plot", "--audio", str(audio), "--out", str(png), "--params", str(params)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_encodec_chunked_matches_whole_within_lstm_memory(tmp_path):
    from tests.latents_helpers import save_tiny_hf_encodec

    options = {"encodec_32khz": {"checkpoint": str(save_tiny_hf_encodec(tmp_path / "tiny"))}}
    wav = (0.1 * np.random.default_rng(5).standard_normal(32000 * 4)).astype(np.float32)
    whole = LatentsExtractor.from_params({"codec": "encodec_32khz", "chunk_seconds": 0, **options})
    chunked = LatentsExtractor.from_params({"codec": "encodec_32khz", "chunk_seconds": 1.0,
                                            "chunk_context_seconds": 1.0, **options})
    a, b = whole.encode(wav), chunked.encode(wav)
    assert a.shape == b.shape == (200, 16)
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())
