"""Stages that stream long tracks chunk by chunk give the same features as whole-track decoding."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.reader import StageStore
from pipeline.audio import audio_chunks
from pipeline.runner import run_stage
from stages.loudness import LoudnessConfig, LoudnessExtractor


class ShortChunkLoudness(LoudnessExtractor):
    """Loudness streaming in 0.37 s chunks, so a few seconds of audio take the streaming path."""

    name = "loudness"
    stream_chunk_seconds = 0.37


class WholeTrackLoudness(LoudnessExtractor):
    name = "loudness"
    stream_chunk_seconds = None


@pytest.mark.parametrize("sr, n, chunk", [(22050, 22050 * 7 + 123, 44100), (8000, 40007, 3001),
                                          (44100, 44100, 1323), (22050, 100, 30)])
def test_loudness_stream_equals_whole(sr, n, chunk):
    stage = LoudnessExtractor(LoudnessConfig())
    x = (np.random.default_rng(0).standard_normal((2, n)) * np.linspace(0, 1, n)).astype(np.float32)
    whole = stage.extract(x, sr)
    streamed = stage.extract_stream((x[:, i:i + chunk] for i in range(0, n, chunk)), sr)
    assert np.array_equal(whole["rms_db"], streamed["rms_db"])
    assert whole["peak_db"] == streamed["peak_db"] and whole["silent_fraction"] == streamed["silent_fraction"]


def test_audio_chunks_join_without_seams(tmp_path):
    rate = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * 3) / rate)).astype(np.float32)
    sf.write(tmp_path / "tone.flac", tone, rate)
    chunks, out_rate = audio_chunks(str(tmp_path / "tone.flac"), 0.7, 22050, 1)
    joined = np.concatenate(list(chunks), axis=1)
    from pipeline.audio import load_audio

    whole, _ = load_audio(tmp_path / "tone.flac", sample_rate=22050, channels=1)
    assert out_rate == 22050 and joined.shape == whole.shape
    assert np.max(np.abs(joined - whole)) < 1e-4


def test_runner_streams_long_tracks_to_the_same_shard_values(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(1)
    for i, seconds in enumerate([0.5, 2.3, 3.1]):  # the first is short: decoded whole
        sf.write(audio / f"t{i}.wav", (0.2 * rng.standard_normal(int(22050 * seconds))).astype(np.float32), 22050)
    table, rejects = build_manifest([audio])
    manifest = tmp_path / "m.parquet"
    write_manifest(table, rejects, manifest)
    for name, cls in (("streamed", ShortChunkLoudness), ("whole", WholeTrackLoudness)):
        report = run_stage(f"{__name__}:{cls.__name__}", {}, manifest, tmp_path / name, ShardingConfig(), progress=False)
        assert report.ok
    streamed, whole = StageStore(tmp_path / "streamed"), StageStore(tmp_path / "whole")
    assert streamed.track_ids() == whole.track_ids() and len(whole.track_ids()) == 3
    for tid in whole.track_ids():
        np.testing.assert_allclose(streamed.get(tid)["rms_db"], whole.get(tid)["rms_db"], atol=1e-4)
