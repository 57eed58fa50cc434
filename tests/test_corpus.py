"""The demo corpus: chord spelling, grammar, formats, and a small rendered corpus checked end to end."""

from __future__ import annotations

import argparse
import hashlib
import json

import mir_eval
import numpy as np
import pytest
import soundfile as sf
import yaml

from music.chords import ChordError, all_vocabulary_chords, chord_label, label_pitch_classes, parse_label, vocabulary_chord
from music.vocabulary import CHORD_NO_CHORD, CHORD_UNKNOWN, load_vocabulary
from pipeline.config import ConfigError, load_section
from pipeline.corpus import cli as corpus_cli
from pipeline.corpus import compose as compose_module
from pipeline.corpus.build import read_index, render_corpus
from pipeline.corpus.chords import match_chord
from pipeline.corpus.clip import render_clip
from pipeline.corpus.config import SLICE_CHANNELS, SLICE_FORMATS, SLICE_SAMPLE_RATES, CorpusConfig
from pipeline.corpus.drums import DRUM_NOTES, DRUM_STYLES, drum_track
from pipeline.corpus.grammar import generate_progression
from pipeline.corpus.melody import MELODY_RANGE
from pipeline.corpus.plan import plan_clip, plan_corpus, split_of
from pipeline.corpus.render import AudioFormat, RenderError, check_soundfont, convert, find_fluidsynth, write_audio
from pipeline.corpus.song import TICKS_PER_QUARTER
from pipeline.numba_cache import import_librosa

librosa = import_librosa()
RENDER_PARAMS = {"clip_seconds": [4.0, 6.0], "format_slice_every": 2, "workers": 2}


def _have_tools() -> bool:
    try:
        find_fluidsynth("fluidsynth")
        check_soundfont(CorpusConfig().soundfont)
    except RenderError:
        return False
    return True


needs_fluidsynth = pytest.mark.skipif(not _have_tools(), reason="fluidsynth / fluid-soundfont-gm not installed")


# ---------------------------------------------------------------- vocabulary and grammar

def test_every_vocabulary_label_round_trips_through_pitch_classes():
    vocab = load_vocabulary()
    spelled = {chord.label for chord in all_vocabulary_chords()}
    assert spelled == set(vocab) - {CHORD_NO_CHORD, CHORD_UNKNOWN}
    for label in spelled:
        chord = parse_label(label)
        assert chord_label(chord.root, chord.quality, chord.bass) == label
    assert chord_label(10, "m7b5", 8) == "Bbm7b5/Ab" and chord_label(1, "maj", 5) == "C#/E#"
    with pytest.raises(ChordError):
        chord_label(0, "min", 3)  # Cm/Eb is not in the vocabulary
    assert vocabulary_chord(0, "min", 3).label == "Cm"


def test_match_chord_reads_triads_sevenths_and_inversions():
    profile = lambda pcs, extra=None: np.bincount(pcs, minlength=12).astype(float) + (extra if extra is not None else 0)
    assert match_chord(profile([0, 4, 7])).label == "C"
    assert match_chord(profile([0, 4, 7, 4]), bass=4).label == "C/E"
    assert match_chord(profile([2, 5, 9, 0])).label == "Dm7"
    assert match_chord(profile([7, 11, 2, 5]), bass=11).label == "G7/B"
    passing = profile([0, 4, 7, 0, 4, 7]) + 0.05 * np.eye(12)[2]
    assert match_chord(passing, bass=2).label == "C"  # a fleeting bass note is not a slash chord
    assert match_chord(np.zeros(12)) is None


def test_grammar_is_deterministic_in_vocabulary_and_varied():
    vocab = load_vocabulary()
    qualities, slashes = set(), 0
    for seed in range(60):
        args = dict(tonic=seed % 12, mode="minor" if seed % 3 == 0 else "major", bars=8,
                    beats_per_bar=3 if seed % 5 == 0 else 4, seventh_p=0.5)
        first = generate_progression(np.random.default_rng(seed), **args)
        again = generate_progression(np.random.default_rng(seed), **args)
        assert first == again
        assert sum(c.beats for c in first) == 8 * args["beats_per_bar"]
        assert all(c.label in vocab for c in first)
        qualities |= {c.chord.quality for c in first}
        slashes += sum(c.chord.bass is not None for c in first)
    assert {"maj", "min", "7", "maj7", "m7", "m7b5", "dim"} <= qualities
    assert 0 < slashes < 0.25 * 60 * 8  # inversions appear, sparingly


def test_generated_melody_uses_chord_tones_on_downbeats():
    config = CorpusConfig(clip_seconds=(10.0, 15.0))
    on_chord = total = 0
    for seed in range(10):
        song, _ = compose_module.grammar_song(np.random.default_rng(seed), config)
        starts = [n.start for n in song.melody]
        assert starts == sorted(set(starts)) and all(a.end <= b.start for a, b in zip(song.melody, song.melody[1:]))
        assert all(MELODY_RANGE[0] <= n.pitch <= MELODY_RANGE[1] for n in song.melody)
        for note in song.melody:
            if note.start % song.bar_ticks == 0:
                span = next(s for s in song.chords if s.start <= note.start < s.end)
                on_chord += note.pitch % 12 in label_pitch_classes(span.label)
                total += 1
    assert on_chord / total > 0.9


@pytest.mark.parametrize("style", sorted(DRUM_STYLES))
def test_drum_styles_fill_the_clip_on_their_grid(style):
    length = 3 * DRUM_STYLES[style].quarters * TICKS_PER_QUARTER
    notes = drum_track(np.random.default_rng(0), style, length)
    step = TICKS_PER_QUARTER // DRUM_STYLES[style].steps_per_quarter
    assert notes and all(n.start % step == 0 and 0 <= n.start < length for n in notes)
    assert {n.pitch for n in notes} <= set(DRUM_NOTES.values())
    assert max(n.start for n in notes) >= length - DRUM_STYLES[style].quarters * TICKS_PER_QUARTER


# ---------------------------------------------------------------- plan, config, formats, tools

def test_plan_is_stable_when_the_corpus_grows_and_covers_all_formats():
    small, large = CorpusConfig(n=10, seed=5), CorpusConfig(n=100, seed=5)
    assert plan_corpus(small) == plan_corpus(large)[:10]
    kinds = [p.kind for p in plan_corpus(large)]
    assert 50 <= kinds.count("grammar") <= 70 and kinds.count("chorale") >= 20 and kinds.count("folk") >= 10
    splits = [split_of(large, i) for i in range(100)]
    assert (splits.count("train"), splits.count("valid"), splits.count("test")) == (60, 15, 25)
    sliced = [p.audio_format for p in plan_corpus(CorpusConfig(n=48)) if p.in_format_slice]
    assert {f.extension for f in sliced} == set(SLICE_FORMATS)
    assert {f.channels for f in sliced} == set(SLICE_CHANNELS) and {f.sample_rate for f in sliced} == set(SLICE_SAMPLE_RATES)
    assert plan_clip(large, 3).params_hash != plan_clip(CorpusConfig(n=100, seed=6), 3).params_hash


def test_config_comes_from_params_and_rejects_bad_values(tmp_path):
    config = load_section(CorpusConfig, "corpus", {"corpus": {"n": 3, "clip_seconds": [4, 6], "source_mix": {"folk": 1}}})
    assert config.n == 3 and config.clip_seconds == (4.0, 6.0) and config.source_mix.folk == 1.0
    for bad in ({"nn": 1}, {"clip_seconds": [6, 4]}, {"split_fractions": {"train": 0.9}}, {"peak_dbfs": 1.0}):
        with pytest.raises(ConfigError):
            load_section(CorpusConfig, "corpus", {"corpus": bad})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"corpus": {"n": 9, "seed": 4}}))
    assert corpus_cli.load_corpus_config(str(params), {"n": 2, "seed": None}) == CorpusConfig(n=2, seed=4)


def test_missing_tools_name_their_debian_packages(tmp_path):
    with pytest.raises(RenderError, match="`fluidsynth`"):
        find_fluidsynth("no-such-fluidsynth-binary")
    with pytest.raises(RenderError, match="fluid-soundfont-gm"):
        check_soundfont(tmp_path / "missing.sf2")


def test_slice_formats_load_back_at_their_rate_and_are_byte_stable(tmp_path):
    rate = 44100
    t = np.arange(int(1.5 * rate)) / rate
    stereo = (0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1)).astype(np.float32)
    for extension in SLICE_FORMATS:
        for sample_rate in SLICE_SAMPLE_RATES:
            for channels in SLICE_CHANNELS:
                fmt = AudioFormat(extension, sample_rate, channels)
                audio = convert(stereo, rate, fmt)
                first, second = tmp_path / f"a.{extension}", tmp_path / f"b.{extension}"
                write_audio(first, audio, fmt)
                write_audio(second, audio, fmt)
                assert first.read_bytes() == second.read_bytes(), fmt
                data, read_rate = sf.read(first, always_2d=True)
                assert read_rate == sample_rate and data.shape[1] == channels
                assert abs(data.shape[0] - round(1.5 * sample_rate)) <= 1, fmt


# ---------------------------------------------------------------- a rendered corpus

def _render_cli(out, params_path, *extra):
    parser = argparse.ArgumentParser()
    corpus_cli.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["corpus", "render", "--out", str(out), "--params", str(params_path), "--no-progress", *extra])
    return args.func(args)


def _hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def params_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump({"corpus": RENDER_PARAMS}))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, params_path):
    """Four clips of 4-6 s, every second one in the mixed-format slice (seed 15: grammar, folk, chorale, grammar; one without drums)."""
    if not _have_tools():
        pytest.skip("fluidsynth / fluid-soundfont-gm not installed")
    root = tmp_path_factory.mktemp("corpus")
    assert _render_cli(root, params_path, "--n", "4", "--seed", "15") == 0
    entries = read_index(root)
    return root, entries, [json.loads((root / e["truth"]).read_text()) for e in entries]


def test_every_clip_has_its_files_and_a_contiguous_chord_timeline(corpus):
    root, entries, truths = corpus
    vocab = load_vocabulary()
    assert [e["clip_id"] for e in entries] == [f"clip_{i:05d}" for i in range(4)]
    assert {t["source"].split(":")[0] for t in truths} >= {"grammar"} and len({t["source"] for t in truths}) >= 3
    for entry, truth in zip(entries, truths):
        assert all((root / entry[key]).is_file() for key in ("audio", "truth", "midi", "drum_stem"))
        assert entry["split"] in ("train", "valid", "test") and entry["duration"] == truth["duration"]
        for key in ("tempo_bpm", "time_signature", "key", "instruments", "drum_style", "source", "seed", "description"):
            assert key in truth
        chords = truth["chords"]
        assert chords[0]["start"] == 0.0 and chords[-1]["end"] == truth["duration"]
        assert all(a["end"] == b["start"] and a["start"] < a["end"] for a, b in zip(chords, chords[1:]))
        assert all(c["label"] in vocab and c["label"] != CHORD_UNKNOWN for c in chords)
        info = sf.info(str(root / entry["audio"]))
        assert abs(info.duration - truth["duration"]) < 2 / info.samplerate + 1e-6
        assert (info.samplerate, info.channels) == (truth["audio"]["sample_rate"], truth["audio"]["channels"])


def test_melody_frames_match_the_note_list(corpus):
    for truth in corpus[2]:
        f0 = np.asarray(truth["melody"])
        rate = truth["melody_frame_rate"]
        assert rate == 100.0 and len(f0) == int(np.ceil(truth["duration"] * rate - 1e-9))
        expected = np.zeros_like(f0)
        for note in truth["melody_notes"]:
            frames = slice(int(np.ceil(note["start"] * rate - 1e-9)), int(np.ceil(note["end"] * rate - 1e-9)))
            expected[frames] = 440.0 * 2 ** ((note["pitch"] - 69) / 12)
        np.testing.assert_allclose(f0, expected, atol=1e-3)
        assert (f0 > 0).mean() > 0.4


def test_drum_stem_lines_up_with_the_onsets_and_is_inside_the_mix(corpus):
    root, entries, truths = corpus
    checked = 0
    for entry, truth in zip(entries, truths):
        mix, rate = sf.read(root / entry["audio"], dtype="float32", always_2d=True)
        stem, stem_rate = sf.read(root / entry["drum_stem"], dtype="float32", always_2d=True)
        assert stem_rate == rate and stem.shape == mix.shape
        mix, stem = mix.mean(axis=1), stem.mean(axis=1)
        if not truth["drum_onsets"]:
            assert truth["drum_style"] is None and np.abs(stem).max() == 0
            continue
        checked += 1
        for onset in truth["drum_onsets"]:
            window = stem[int(onset["time"] * rate): int((onset["time"] + 0.1) * rate)]
            assert np.sqrt(np.mean(window ** 2)) > 10 ** (-50 / 20)
        reference = np.unique([o["time"] for o in truth["drum_onsets"]])
        detected = librosa.onset.onset_detect(y=stem, sr=rate, hop_length=256, units="time")
        f_measure, _, _ = mir_eval.onset.f_measure(reference, detected, window=0.05)
        assert f_measure > 0.8, (entry["clip_id"], f_measure)
        projection = float(np.dot(mix, stem) / np.dot(stem, stem))
        assert 0.8 < projection < 1.25, projection  # the mix is the stem plus uncorrelated parts
    assert checked >= 2


def test_chord_labels_are_audible_in_the_chroma(corpus):
    root, entries, truths = corpus
    hits = total = 0
    for entry, truth in zip(entries, truths):
        audio, rate = sf.read(root / entry["audio"], dtype="float32", always_2d=True)
        chroma = librosa.feature.chroma_cqt(y=audio.mean(axis=1), sr=rate, hop_length=512)
        for chord in truth["chords"]:
            pcs = label_pitch_classes(chord["label"])
            if not pcs or chord["end"] - chord["start"] < 0.4:
                continue
            frames = chroma[:, int(chord["start"] * rate / 512): int(chord["end"] * rate / 512)]
            hits += int(np.argmax(frames.mean(axis=1))) in pcs
            total += 1
    assert total >= 8 and hits / total >= 0.75


def test_rerun_is_a_noop_and_the_same_seed_is_identical(corpus, params_path, tmp_path):
    root = corpus[0]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert _render_cli(root, params_path, "--n", "4", "--seed", "15") == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before
    again = tmp_path / "again"
    assert _render_cli(again, params_path, "--n", "4", "--seed", "15", "--workers", "1") == 0
    assert _hashes(again) == _hashes(root)
    other = tmp_path / "other"
    assert _render_cli(other, params_path, "--n", "2", "--seed", "16") == 0
    assert all(_hashes(other)[f"truth/clip_{i:05d}.json"] != _hashes(root)[f"truth/clip_{i:05d}.json"] for i in range(2))


def test_interrupted_render_resumes_only_the_missing_clip(corpus, params_path, tmp_path):
    root = tmp_path / "resume"
    assert _render_cli(root, params_path, "--n", "2", "--seed", "15") == 0
    (root / "truth" / "clip_00001.json").unlink()  # the truth is written last: clip 1 was cut short
    stale = root / "audio" / ".clip_00001.wav.tmp-123-abcdef01"
    stale.write_bytes(b"partial")
    kept = (root / "truth" / "clip_00000.json").stat().st_mtime_ns
    summary = render_corpus(load_section(CorpusConfig, "corpus", {"corpus": {**RENDER_PARAMS, "n": 2, "seed": 15}}), root, progress=False)
    assert (summary.rendered, summary.skipped) == (1, 1) and not stale.exists()
    assert (root / "truth" / "clip_00000.json").stat().st_mtime_ns == kept
    assert _hashes(root)["truth/clip_00001.json"] == _hashes(corpus[0])["truth/clip_00001.json"]
    # New parameters re-render every clip; clip 1 leaves the format slice and its flac goes away.
    plain = load_section(CorpusConfig, "corpus", {"corpus": {**RENDER_PARAMS, "n": 2, "seed": 15, "format_slice_every": 0}})
    assert render_corpus(plain, root, progress=False).rendered == 2
    assert sorted(p.name for p in (root / "audio").iterdir()) == ["clip_00000.wav", "clip_00001.wav"]


@needs_fluidsynth
def test_a_failing_piece_is_replaced_deterministically(monkeypatch, tmp_path):
    from pipeline.corpus import sources

    def broken(*args, **kwargs):
        raise sources.SourceError("simulated unreadable score")

    monkeypatch.setattr(sources, "load_chorale", broken)
    monkeypatch.setattr(sources, "load_lead_sheet", broken)
    config = CorpusConfig(n=8, seed=7, clip_seconds=(4.0, 6.0), workers=1, format_slice_every=0)
    plan = next(p for p in plan_corpus(config) if p.kind != "grammar")
    results = [render_clip(config, plan, tmp_path / name) for name in ("a", "b")]
    for result in results:
        assert result.entry is not None and len(result.replaced) == 2 and "simulated" in result.replaced[0]
    truth = json.loads((tmp_path / "a" / results[0].entry["truth"]).read_text())
    assert truth["source"] == "grammar" and truth["generation"]["attempt"] == 2
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")


def test_plot_draws_a_png(corpus, tmp_path):
    parser = argparse.ArgumentParser()
    corpus_cli.add_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "clip.png"
    args = parser.parse_args(["corpus", "plot", "clip_00000", "--corpus", str(corpus[0]), "--out", str(out)])
    assert args.func(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
