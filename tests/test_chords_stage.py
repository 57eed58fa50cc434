"""The chords stage with the real Chordino plugin: synthesized progressions, formats, silence,
corrupt files, alignment between stored frames and the sampler's conversion, parallel == serial."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from music.frames import frames_for_seconds
from pipeline.config import ConfigError
from pipeline.executors import ExecutorConfig, make_executor
from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.reader import StageStore
from pipeline.runner import run_stage
from pipeline.stage import create_stage
from pipeline.store import list_shards
from stages.chords import ChordsExtractor, Vocabulary, timeline_to_frames
from stages.chords.chordino import Chordino, ChordinoError, ChordinoParams, load_vamp, run_chordino
from stages.chords.stage import CHORDINO_SAMPLE_RATE, changes_to_segments

SR = 44100
FR = 50.0
FRAME_S = 1.0 / FR
JASCO = Vocabulary.jasco()
# Piano-like voicings (bass + close position), MIDI numbers.
VOICINGS = {"C": (48, 60, 64, 67), "G": (43, 59, 62, 67), "Am": (45, 60, 64, 69), "F": (41, 60, 65, 69)}
# Durations on no grid (not multiples of Chordino's 46 ms hop nor of the 20 ms frame).
PROGRESSION = [("C", 1.7), ("G", 2.05), ("Am", 1.55), ("F", 2.3), ("C", 1.9), ("G", 1.62), ("Am", 2.13), ("F", 1.8)]
# An N segment at a track edge shorter than one Chordino hop is the plugin's first/last frame.
EDGE_N_S = ChordinoParams().step_size / CHORDINO_SAMPLE_RATE


def progression_audio(progression=PROGRESSION, sr=SR, decay=0.5) -> np.ndarray:
    """(n,) float32: each chord as six-harmonic tones, struck at its start and decaying slowly."""
    parts = []
    for label, seconds in progression:
        t = np.arange(round(seconds * sr)) / sr
        freqs = [440.0 * 2 ** ((m - 69) / 12) for m in VOICINGS[label]]
        tone = sum(0.6**h * np.sin(2 * np.pi * f * (h + 1) * t) for f in freqs for h in range(6))
        parts.append(tone * np.exp(-decay * t))
    audio = np.concatenate(parts)
    return (0.25 * audio / np.abs(audio).max()).astype(np.float32)


def truth_segments(progression=PROGRESSION):
    bounds = np.concatenate([[0.0], np.cumsum([s for _, s in progression])])
    return [(label, float(a), float(b)) for (label, _), a, b in zip(progression, bounds[:-1], bounds[1:])]


def inner(timeline):
    """Timeline segments without short N segments at the edges, as (label, start, end)."""
    segments = [(s["label"], s["start"], s["end"]) if isinstance(s, dict) else s for s in timeline]
    while segments and segments[0][0] == "N" and segments[0][2] - segments[0][1] < EDGE_N_S:
        segments = segments[1:]
    while segments and segments[-1][0] == "N" and segments[-1][2] - segments[-1][1] < EDGE_N_S:
        segments = segments[:-1]
    return segments


def assert_matches_progression(timeline, progression=PROGRESSION, tolerance_s=FRAME_S):
    found = inner(timeline)
    truth = truth_segments(progression)
    assert [s[0] for s in found] == [s[0] for s in truth]
    errors = [abs(f[1] - t[1]) for f, t in zip(found[1:], truth[1:])]
    assert max(errors) <= tolerance_s, errors


@pytest.fixture(scope="module")
def stage() -> ChordsExtractor:
    stage = create_stage("chords", {})
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def progression() -> np.ndarray:
    return progression_audio()


def test_synthesized_progression_labels_and_boundaries_within_one_frame(stage, progression):
    out = stage.extract(progression[None], SR)
    duration = len(progression) / SR
    assert out["duration_s"] == pytest.approx(duration)
    assert_matches_progression(out["timeline"])
    # the timeline tiles the track
    timeline = out["timeline"]
    assert timeline[0]["start"] == 0.0 and timeline[-1]["end"] == pytest.approx(duration, abs=1e-4)
    assert all(a["end"] == b["start"] for a, b in zip(timeline, timeline[1:]))
    # frame level: equal to the truth's frames except at most one frame at each change and the frames
    # before the middle of Chordino's first two frames (its HMM starts in N)
    frames = out["chord_index"]
    truth_changes = [(label, start) for label, start, _ in truth_segments()]
    expected = timeline_to_frames(truth_changes, frames_for_seconds(duration, FR), JASCO)
    assert frames.dtype == np.int16 and frames.shape == expected.shape == (frames_for_seconds(duration, FR),)
    wrong = np.flatnonzero(frames != expected)
    change_frames = np.array([start * FR for _, start, _ in truth_segments()[1:]])
    edge_frames = np.ceil(EDGE_N_S / 2 * FR)
    for k in wrong:
        assert k < edge_frames or np.min(np.abs(change_frames - (k + 0.5))) <= 1.0, k
    assert len(wrong) <= len(change_frames) + edge_frames
    assert out["unknown_frames"] == 0


def test_other_rates_and_stereo_give_the_same_chords(stage, progression):
    stereo_22k = soxr.resample(progression, SR, 22050).astype(np.float32)
    out = stage.extract(np.stack([stereo_22k, stereo_22k]), 22050)
    assert_matches_progression(out["timeline"])


def test_defaults_analyse_at_11025_with_the_plugins_window_length(stage):
    """The speed defaults (issue 19): a quarter of 44.1 kHz, the plugin's 0.37 s window, 67 ms steps."""
    params = stage.config.chordino
    assert stage.sample_rate == CHORDINO_SAMPLE_RATE == 11025 and stage.channels == 1
    assert params.block_size / CHORDINO_SAMPLE_RATE == pytest.approx(16384 / 44100)
    assert params.step_size / CHORDINO_SAMPLE_RATE == pytest.approx(0.067, abs=0.001)
    assert stage.config.refine.window / CHORDINO_SAMPLE_RATE == pytest.approx(2048 / 44100)


def test_one_plugin_serves_track_after_track_like_a_fresh_one(progression):
    """A reused plugin is reset per track: its output equals a plugin loaded for that track alone."""
    vamp, params = load_vamp(), ChordinoParams()
    mono = soxr.resample(progression, SR, CHORDINO_SAMPLE_RATE).astype(np.float32)
    other = soxr.resample(progression_audio(PROGRESSION[::-1]), SR, CHORDINO_SAMPLE_RATE).astype(np.float32)
    chordino = Chordino(vamp, CHORDINO_SAMPLE_RATE, params)
    first = chordino.changes(mono)
    assert chordino.changes(other) == run_chordino(vamp, other, CHORDINO_SAMPLE_RATE, params)
    assert chordino.changes(mono) == first == run_chordino(vamp, mono, CHORDINO_SAMPLE_RATE, params)
    with pytest.raises(ValueError, match="mono"):
        chordino.changes(np.stack([mono, mono]))


def test_full_rate_framing_still_available(progression):
    """The plugin's own framing at 44.1 kHz is two config values away and finds the same chords."""
    full = create_stage("chords", {"sample_rate": 44100, "chordino": {"block_size": 16384, "step_size": 2048},
                                   "refine": {"window": 2048, "hop": 128}})
    assert_matches_progression(full.extract(progression[None], SR)["timeline"])


def test_silence_gives_all_n(stage):
    out = stage.extract(np.zeros((1, 3 * SR), np.float32), SR)
    assert [s["label"] for s in out["timeline"]] == ["N"]
    assert out["chord_index"].tolist() == [0] * 150
    assert out["unknown_frames"] == 0


def test_chordino_parameters_reach_the_plugin(stage, progression):
    assert ChordinoParams().vamp_parameters() == {
        "useNNLS": 1.0, "rollon": 0.0, "tuningmode": 0.0, "whitening": 1.0, "s": 0.7, "boostn": 0.1, "usehartesyntax": 0.0}
    assert ChordinoParams(use_nnls=False, tuning_mode="local").vamp_parameters()["tuningmode"] == 1.0
    other = create_stage("chords", {"chordino": {"spectral_whitening": 0.0, "spectral_shape": 0.9}})
    assert other.extract(progression[None], SR)["timeline"] != stage.extract(progression[None], SR)["timeline"]


@pytest.mark.parametrize("params, message", [
    ({"chordino": {"roll_on": 7}}, "roll_on"),
    ({"chordino": {"roll_on": 0.3}}, "roll_on"),
    ({"chordino": {"spectral_shape": 1.0}}, "spectral_shape"),
    ({"chordino": {"boost_n": -0.1}}, "boost_n"),
    ({"chordino": {"step_size": 0}}, "step_size"),
    ({"chordino": {"tuning_mode": "weird"}}, "tuning_mode"),
    ({"timing": "late"}, "timing"),
    ({"roll_on": 1}, "unknown key"),
])
def test_bad_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        create_stage("chords", params)


def test_missing_plugin_is_a_clear_error(tmp_path):
    with pytest.raises(ChordinoError, match=str(tmp_path)):
        create_stage("chords", {"plugin_dir": str(tmp_path)}).setup()


def test_custom_vocabulary_and_params_hash(tmp_path, progression):
    path = tmp_path / "small.json"
    Vocabulary({"N": 0, "C": 1, "G": 2, "UNK": 3}).write(path)
    custom = create_stage("chords", {"vocabulary": str(path)})
    out = custom.extract(progression[None], SR)
    assert set(out["chord_index"].tolist()) <= {0, 1, 2, 3}
    # Am and F are not in the table: their frames are UNK and counted
    am_f_seconds = sum(s for label, s in PROGRESSION if label in ("Am", "F"))
    assert out["unknown_frames"] == pytest.approx(am_f_seconds * FR, abs=len(PROGRESSION))
    before = custom.params_hash
    assert before != create_stage("chords", {}).params_hash
    Vocabulary({"N": 0, "G": 1, "C": 2, "UNK": 3}).write(path)  # same path, other content
    assert create_stage("chords", {"vocabulary": str(path)}).params_hash != before


def test_changes_to_segments_clamps_merges_and_fills():
    changes = [(-0.02, "N"), (0.02, "Db"), (1.0, "C#"), (1.5, "Am"), (1.5, "F"), (3.0, "N"), (3.2, "N")]
    assert changes_to_segments(changes, 3.0) == [("N", 0.0, 0.02), ("C#", 0.02, 1.5), ("F", 1.5, 3.0)]
    assert changes_to_segments([(0.5, "C")], 2.0) == [("N", 0.0, 0.5), ("C", 0.5, 2.0)]
    assert changes_to_segments([], 1.0) == [("N", 0.0, 1.0)]


# ----------------------------------------------------------------------------- through the runner


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """flac (22.05 kHz stereo), mp3 (44.1 kHz stereo), wav, a silent file and one file corrupted
    after manifesting; serial run done once."""
    root = tmp_path_factory.mktemp("chords_corpus")
    audio = root / "audio"
    audio.mkdir()
    x = progression_audio()
    short = progression_audio(PROGRESSION[:4])
    sf.write(audio / "prog_flac.flac", np.stack([soxr.resample(x, SR, 22050)] * 2, axis=1), 22050, format="FLAC")
    sf.write(audio / "prog_mp3.mp3", np.stack([x, x], axis=1), SR, format="MP3")
    sf.write(audio / "prog_wav.wav", short, SR)
    sf.write(audio / "silent.flac", np.zeros(2 * SR, np.float32), SR, format="FLAC")
    sf.write(audio / "victim.wav", short[::-1], SR)  # other content: the manifest drops duplicates
    table, rejects = build_manifest([audio])
    manifest = root / "manifest.parquet"
    write_manifest(table, rejects, manifest)
    victim = audio / "victim.wav"
    victim.write_bytes(victim.read_bytes()[:300])
    sharding = ShardingConfig(tracks_per_shard=2)
    report = run_stage("chords", {}, manifest, root / "serial", sharding, progress=False)
    return root, manifest, sharding, report


def _row(store, stem):
    return next(row for row in store if Path(row["path"]).stem == stem)


def test_mp3_and_flac_inputs(small_corpus):
    root, _, _, report = small_corpus
    store = StageStore(root / "serial")
    assert_matches_progression(_row(store, "prog_flac")["timeline"])
    assert_matches_progression(_row(store, "prog_mp3")["timeline"])
    assert_matches_progression(_row(store, "prog_wav")["timeline"], PROGRESSION[:4])
    silent = _row(store, "silent")
    assert [s["label"] for s in silent["timeline"]] == ["N"] and not silent["chord_index"].any()


def test_corrupt_file_lands_in_the_error_table_without_losing_the_shard(small_corpus):
    root, _, _, report = small_corpus
    assert report.ok and report.track_errors == 1 and report.shards == 3
    store = StageStore(root / "serial")
    assert len(store) == 4 and not any(Path(t).name.startswith("victim") for t in store.track_ids())
    errors = store.errors().to_pylist()
    assert len(errors) == 1 and "victim.wav" in errors[0]["reason"]
    assert errors[0]["error_type"] in ("truncated", "corrupt")
    # the shard that held the victim kept its other track
    shard = errors[0]["shard"]
    assert len([p for p in list_shards(root / "serial") if int(p.stem.split("-")[1]) == shard]) == 1
    assert any(row["track_id"] for row in store if row["track_id"] != errors[0]["track_id"])
    import pyarrow.parquet as pq
    assert pq.read_table(root / "serial" / "_errors.parquet").num_rows == 1


def test_stored_frames_equal_the_sampler_conversion_of_the_stored_timeline(small_corpus):
    """What training reads == what the sampler builds from [(label, start), ...]."""
    root, _, _, _ = small_corpus
    store = StageStore(root / "serial")
    assert store.frame_rate == FR
    for row in store:
        user_list = [(s["label"], s["start"]) for s in row["timeline"]]
        rebuilt = timeline_to_frames(user_list, frames_for_seconds(float(row["duration_s"]), FR), JASCO, FR)
        assert np.array_equal(rebuilt, row["chord_index"]), row["path"]
        assert len(row["chord_index"]) == frames_for_seconds(float(row["duration_s"]), FR)


def test_rerun_skips_complete_shards(small_corpus):
    root, manifest, sharding, _ = small_corpus
    again = run_stage("chords", {}, manifest, root / "serial", sharding, progress=False)
    assert again.written == 0 and again.skipped == 3


@pytest.mark.parametrize("backend", ["process", "dask"])
def test_parallel_equals_serial(small_corpus, backend):
    root, manifest, sharding, _ = small_corpus
    serial = {p.name: p.read_bytes() for p in list_shards(root / "serial")}
    with make_executor(ExecutorConfig(backend=backend, workers=2)) as executor:
        report = run_stage("chords", {}, manifest, root / backend, sharding, executor=executor, progress=False)
    assert report.ok and report.track_errors == 1
    assert {p.name: p.read_bytes() for p in list_shards(root / backend)} == serial
