"""`chordflow eval`: scores of generated audio against its controls (model/evaluation/score.py & co).

The acceptance test ("eval on a file with known chords") renders a small corpus, writes a
generation report whose clips are those renderings with their true chords, melody and drum stem
as the request, and checks that the project's own analysers find them (and do not find a wrong
progression), with the chance baselines computed next to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from model.evaluation.embedding import EmbeddingConfig, embed, frechet_distance
from model.evaluation.cli import add_cli
from model.evaluation.report import REPORT_FORMAT, ClipRequest, ReportError, read_report
from model.evaluation.config import ModelEvalConfig
from model.evaluation.score import (
    chance_partners,
    frame_iou,
    melody_accuracy,
    onset_f1,
    requested_melody_index,
    requested_segments,
    summarize,
)
from pipeline.config import ConfigError, load_config
from stages.melody.constants import JASCO_LOWEST_MIDI, JASCO_N_SEMITONES, WEIGHTS_ENV

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "shared" / "weights" / "deepsalience"
PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MELODY_RATE = 50.0


def chordflow_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chordflow")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


# ----------------------------------------------------------------------------- pure scores
def test_frame_iou_is_the_mean_over_chord_classes_without_no_chord():
    requested = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 2, 3, 3])  # a stray N frame, then a wrong chord at the end
    # class 1: 3/4, class 2: 2/4, class 3: 0/2 -> mean 5/12; N is no class
    assert frame_iou(predicted, requested) == pytest.approx((3 / 4 + 2 / 4 + 0) / 3)
    assert frame_iou(requested, requested) == 1.0
    assert frame_iou(np.zeros(8, int), requested) == 0.0  # nothing heard
    assert math.isnan(frame_iou(np.zeros(4, int), np.zeros(4, int)))
    with pytest.raises(ValueError, match="shape"):
        frame_iou(np.zeros(3), np.zeros(4))


def test_requested_segments_end_at_the_clip_duration():
    assert requested_segments([("C", 0.0), ("G", 2.5), ("F", 9.0)], 8.0) == [("C", 0.0, 2.5), ("G", 2.5, 8.0)]


def test_melody_accuracy_exact_and_pitch_class_on_voiced_frames():
    requested = np.array([10, 10, 22, 5, -1, -1])
    predicted = np.array([10, 22, 22, -1, 3, -1])  # right, octave off, right, unheard; unvoiced frames ignored
    exact, pitch_class, voiced = melody_accuracy(predicted, requested)
    assert (exact, pitch_class, voiced) == (pytest.approx(2 / 4), pytest.approx(3 / 4), 4)
    assert math.isnan(melody_accuracy(predicted, np.full(6, -1))[0])


def test_requested_melody_index_reads_the_row_under_each_frame_centre():
    matrix = np.zeros((4, JASCO_N_SEMITONES), np.float32)
    matrix[0, 7] = matrix[1, 9] = matrix[3, 2] = 1.0  # row 2 unvoiced
    np.testing.assert_array_equal(requested_melody_index(matrix, 4, 50.0, 50.0), [7, 9, -1, 2])
    # 25 fps request read at 50 fps: each row covers two frames; frames past the end are unvoiced
    np.testing.assert_array_equal(requested_melody_index(matrix, 10, 50.0, 25.0), [7, 7, 9, 9, -1, -1, 2, 2, -1, -1])


def test_onset_f1_conventions():
    assert onset_f1(np.array([0.5, 1.0]), np.array([0.52, 1.2])) == pytest.approx(0.5)
    assert onset_f1(np.array([0.5]), np.zeros(0)) == 0.0
    assert math.isnan(onset_f1(np.zeros(0), np.array([0.5])))
    assert onset_f1(np.array([0.5]), np.array([0.58]), tolerance_s=0.1) == 1.0


def _request(clip_id: str, group: str, chords=None) -> ClipRequest:
    return ClipRequest(id=clip_id, wav=Path(f"{clip_id}.wav"), duration_s=4.0, group=group, conditions={},
                       chords=chords)


def test_chance_partner_is_the_next_different_request_of_the_same_group():
    prog_a, prog_b = (("C", 0.0),), (("G", 0.0),)
    clips = [_request("a1", "A", prog_a), _request("b1", "B", prog_a), _request("a2", "A", prog_a),
             _request("a3", "A", prog_b), _request("a4", "A", None), _request("b2", "B", prog_a)]
    partners = chance_partners(clips, lambda c: c.chords)
    assert partners == {"a1": "a3", "a2": "a3", "a3": "a1", "b1": None, "b2": None}


def test_summarize_per_group_ignores_missing_values():
    rows = [{"group": "g", "chord_accuracy": 1.0, "chord_accuracy_chance": 0.2},
            {"group": "g", "chord_accuracy": 0.5, "chord_accuracy_chance": math.nan},
            {"group": "h", "onset_f1": 0.75}]
    groups = summarize(rows)
    assert groups["g"]["chord_accuracy"] == {"mean": 0.75, "std": 0.25, "n": 2}
    assert groups["g"]["chord_accuracy_chance"]["n"] == 1 and "onset_f1" not in groups["g"]
    assert groups["h"] == {"onset_f1": {"mean": 0.75, "std": 0.0, "n": 1}}


def test_config_rejects_unknown_keys_and_bad_values():
    assert load_config(ModelEvalConfig, {"frechet": {"n_mels": 32}}).frechet.dimensions == 32 + 40 + 12
    with pytest.raises(ConfigError, match="unknown"):
        load_config(ModelEvalConfig, {"chord_metrics": "majmin"})
    with pytest.raises(ConfigError):
        load_config(ModelEvalConfig, {"chord_metric": "sevenths"})
    with pytest.raises(ConfigError):
        load_config(ModelEvalConfig, {"onset_tolerance_s": 0})


# ----------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_of_a_set_with_itself_is_zero_and_a_shift_adds_its_square():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 116)) * rng.uniform(0.1, 10, size=116)  # fewer vectors than dimensions
    rounding = 1e-6 * np.trace(np.cov(a, rowvar=False))  # eigendecompositions of a large-trace matrix
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=rounding)
    shift = rng.normal(size=116)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), abs=rounding)
    assert frechet_distance(a, 2 * a) > 0
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], a)


def test_embedding_windows_and_dimensions():
    config = EmbeddingConfig()
    rng = np.random.default_rng(1)
    noise = (0.1 * rng.normal(size=config.sample_rate * 3)).astype(np.float32)
    vectors = embed(noise, config)
    assert vectors.shape == (3, config.dimensions) == (3, 116)
    assert embed(noise[: config.sample_rate // 2 + 600], config).shape[0] == 1  # a short clip: one window
    np.testing.assert_array_equal(vectors, embed(noise, config))  # deterministic


# ----------------------------------------------------------------------------- report format
def test_report_reader_names_the_file_and_keeps_good_clips(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something/2", "clips": []}))
    with pytest.raises(ReportError, match="bad.json"):
        read_report(bad)
    with pytest.raises(ReportError, match="missing.json"):
        read_report(tmp_path / "missing.json")
    good = {"id": "a", "wav": "clips/a.wav", "duration_s": 4.0, "group": "g", "chords": [["G", 2.0], ["C", 0.0]],
            "melody": "a.npy", "conditions": {"chords": True}}
    path = tmp_path / "r" / "report.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"format": REPORT_FORMAT, "sample_rate": 22050, "clips": [
        good, {**good, "id": "b", "chords": [["C"]]}, {**good, "id": "c", "duration_s": -1}, {**good}]}))
    report = read_report(path)
    assert [c.id for c in report.clips] == ["a"]
    clip = report.clips[0]
    assert clip.wav == path.parent / "clips" / "a.wav" and clip.melody == path.parent / "a.npy"
    assert clip.chords == (("C", 0.0), ("G", 2.0)) and clip.conditions["chords"] and not clip.conditions["drums"]
    assert [name for name, _ in report.problems] == ["b", "c", "a"]
    assert all("report.json" in reason for _, reason in report.problems)


# ----------------------------------------------------------------------------- acceptance
def _root_pitch_class(label: str) -> int:
    return (PITCH_CLASSES[label[0]] + {"#": 1, "b": -1}.get(label[1:2], 0)) % 12


def wrong_progression(changes: list[list]) -> list[list]:
    """The same change times, each chord replaced by a major triad whose root is in no chord of
    the progression (so majmin cannot match)."""
    used = {_root_pitch_class(label) for label, _ in changes if label != "N"}
    free = [pc for pc in range(12) if pc not in used]
    return [[SHARP_NAMES[free[i % len(free)]], start] for i, (_, start) in enumerate(changes)]


def melody_matrix(truth: dict, duration_s: float) -> np.ndarray:
    """The truth f0 (Hz, 100 fps) as JASCO's (T, 53) one-hot matrix at 50 fps."""
    f0 = np.asarray(truth["melody"], dtype=np.float64)
    n = int(math.ceil(duration_s * MELODY_RATE))
    rows = np.minimum(((np.arange(n) + 0.5) / MELODY_RATE * truth["melody_frame_rate"]).astype(int), len(f0) - 1)
    hz = f0[rows]
    matrix = np.zeros((n, JASCO_N_SEMITONES), np.float32)
    voiced = np.flatnonzero(hz > 0)
    index = np.round(69 + 12 * np.log2(hz[voiced] / 440.0)).astype(int) - JASCO_LOWEST_MIDI
    keep = (index >= 0) & (index < JASCO_N_SEMITONES)
    matrix[voiced[keep], index[keep]] = 1.0
    return matrix


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A rendered corpus standing in for generated audio, and its generation report."""
    from pipeline.corpus.build import render_corpus
    from pipeline.corpus.config import CorpusConfig
    from pipeline.manifest import build_manifest, write_manifest

    root = tmp_path_factory.mktemp("model_eval")
    config = CorpusConfig(n=3, seed=3, clip_seconds=(4.0, 5.0), drum_probability=1.0, format_slice_every=0, workers=2)
    summary = render_corpus(config, root / "corpus", progress=False)
    assert not summary.failed and all(e["has_drums"] for e in summary.entries)
    table, rejects = build_manifest([root / "corpus" / "audio"])
    write_manifest(table, rejects, root / "reference.parquet")
    out = root / "generated"
    out.mkdir()
    clips = []
    for entry in summary.entries:
        truth = json.loads((root / "corpus" / entry["truth"]).read_text())
        np.save(out / f"{entry['clip_id']}.melody.npy", melody_matrix(truth, entry["duration"]))
        clips.append({"id": f"{entry['clip_id']}_given", "wav": f"../corpus/{entry['audio']}", "duration_s": entry["duration"],
                      "description": truth["description"], "group": "chords_given",
                      "conditions": {"chords": True, "melody": True, "drums": True, "text": True},
                      "chords": [[c["label"], c["start"]] for c in truth["chords"]],
                      "melody": f"{entry['clip_id']}.melody.npy", "melody_frame_rate": MELODY_RATE,
                      "drums": f"../corpus/{entry['drum_stem']}", "source_track": entry["clip_id"]})
    first = clips[0]
    clips.append({**first, "id": "wrong_chords", "group": "wrong", "chords": wrong_progression(first["chords"]),
                  "melody": None, "drums": None})
    clips.append({**first, "id": "missing_audio", "group": "wrong", "wav": "clips/none.wav", "melody": None, "drums": None})
    (out / "report.json").write_text(json.dumps({"format": REPORT_FORMAT, "sample_rate": 44100, "clips": clips}))
    return root


@pytest.fixture(scope="module")
def scored(generated, monkeypatch_module):
    """`chordflow eval score` on the report (DeepSalience weights from ../shared when present)."""
    if WEIGHTS_DIR.is_dir():
        monkeypatch_module.setenv(WEIGHTS_ENV, str(WEIGHTS_DIR))
    out, per_clip = generated / "metrics" / "model.json", generated / "clips.json"
    code = chordflow_eval(["score", "--report", str(generated / "generated" / "report.json"), "--out", str(out),
                           "--per-clip", str(per_clip), "--params", str(generated / "absent.yaml"),
                           "--reference-manifest", str(generated / "reference.parquet"), "--no-progress"])
    assert code == 0
    return json.loads(out.read_text()), {row["id"]: row for row in json.loads(per_clip.read_text())}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_eval_on_a_process_pool_gives_the_serial_figures(generated, scored):
    params = generated / "pool.yaml"
    params.write_text("executor: {backend: process, workers: 2}\n")
    out, per_clip = generated / "metrics" / "pooled.json", generated / "pooled_clips.json"
    assert chordflow_eval(["score", "--report", str(generated / "generated" / "report.json"), "--out", str(out),
                           "--per-clip", str(per_clip), "--params", str(params),
                           "--reference-manifest", str(generated / "reference.parquet"), "--no-progress"]) == 0
    serial, serial_rows = scored
    pooled, pooled_rows = json.loads(out.read_text()), json.loads(per_clip.read_text())
    assert {k: v for k, v in pooled.items() if k != "timing"} == {k: v for k, v in serial.items() if k != "timing"}
    assert [{k: v for k, v in row.items() if k != "analysis_seconds"} for row in pooled_rows] == \
        [{k: v for k, v in row.items() if k != "analysis_seconds"} for row in serial_rows.values()]


def test_a_second_report_scored_in_the_same_run_gets_its_own_figures(generated, scored):
    report = str(generated / "generated" / "report.json")
    first, second = generated / "metrics" / "first.json", generated / "metrics" / "second.json"
    assert chordflow_eval(["score", "--report", report, "--out", str(first), "--also", report, str(second),
                           "--params", str(generated / "absent.yaml"), "--no-progress",
                           "--reference-manifest", str(generated / "reference.parquet")]) == 0
    serial = {k: v for k, v in scored[0].items() if k != "timing"}
    for out in (first, second):  # the second reuses the reference clips' measures: the same figures
        assert {k: v for k, v in json.loads(out.read_text()).items() if k != "timing"} == serial


def test_eval_on_files_with_known_chords(scored):
    metrics, rows = scored
    given, wrong = metrics["groups"]["chords_given"], metrics["groups"]["wrong"]
    assert metrics["clips"] == 5 and metrics["chord_metric"] == "majmin"
    assert given["chord_accuracy"]["n"] == 3 and given["chord_accuracy"]["mean"] > 0.8
    assert min(rows[f"{c}_given"]["chord_accuracy"] for c in ("clip_00000", "clip_00001", "clip_00002")) > 0.7
    # chance: each clip against the next clip's progression, far below the clip's own
    assert given["chord_accuracy_chance"]["n"] == 3
    assert given["chord_accuracy_chance"]["mean"] < given["chord_accuracy"]["mean"] - 0.3
    assert rows["clip_00000_given"]["chance_clips"]["chords"] == "clip_00001_given"
    assert given["chord_iou"]["mean"] > given["chord_iou_chance"]["mean"]
    assert given["no_chord_fraction"]["mean"] < 0.1
    # a progression the audio does not play
    assert rows["wrong_chords"]["chord_accuracy"] < 0.2 and wrong["chord_accuracy"]["n"] == 1
    assert rows["wrong_chords"]["extracted_chords"] == rows["clip_00000_given"]["extracted_chords"]


def test_eval_scores_drum_onsets_against_the_reference(scored):
    metrics, rows = scored
    given = metrics["groups"]["chords_given"]
    assert given["onset_f1"]["n"] == 3 and given["onset_f1"]["mean"] > 0.6
    assert given["onset_f1_chance"]["n"] == 3 and "onset_f1" not in metrics["groups"]["wrong"]


def test_eval_scores_the_melody_or_says_why_not(scored):
    metrics, _ = scored
    given = metrics["groups"]["chords_given"]
    if "melody" in metrics["skipped"]:  # no DeepSalience weights on this machine (no ../shared)
        assert "WeightsError" in metrics["skipped"]["melody"] and "melody_accuracy" not in given
        pytest.skip(f"DeepSalience weights not available: melody skip recorded ({metrics['skipped']['melody']})")
    assert given["melody_accuracy"]["n"] == 3 and given["melody_accuracy"]["mean"] > 0.4
    assert given["melody_pitch_class_accuracy"]["mean"] >= given["melody_accuracy"]["mean"]
    assert given["melody_accuracy_chance"]["mean"] < given["melody_accuracy"]["mean"] - 0.2


def test_eval_records_a_missing_file_and_goes_on(scored):
    metrics, rows = scored
    assert metrics["clips_with_errors"] == 1 and "none.wav" in metrics["errors"]["missing_audio"]["audio"]
    assert "chord_accuracy" not in rows["missing_audio"] and rows["missing_audio"]["extracted_chords"] is None


def test_eval_frechet_distance_to_the_reference(scored):
    frechet = scored[0]["frechet"]
    assert frechet["embedding"] == "logmel_chroma_mfcc_stats" and frechet["reference_clips"] == 3
    # the "generated" clips are the reference clips (+ clip 0 twice), so they are close but not identical
    assert 0 < frechet["distance"] < frechet["groups"]["wrong"]
    assert frechet["groups"]["chords_given"] < 1e-6 * frechet["groups"]["wrong"]  # exactly the reference set
    assert isinstance(frechet["real_vs_real"], float) and frechet["real_vs_real"] > 0
    assert frechet["generated_clips"] == 4 and frechet["generated_windows"] >= 4 * 4  # 4-5 s clips, 1 s windows


def test_frechet_of_a_set_with_itself_is_zero_and_positive_against_another(generated):
    from model.evaluation.embedding import embed_manifest

    config = EmbeddingConfig()
    clips, failed = embed_manifest(generated / "reference.parquet", config, progress=False)
    assert len(clips) == 3 and not failed
    real = np.concatenate(clips)
    rng = np.random.default_rng(2)
    noise = np.concatenate([embed((0.05 * rng.normal(size=config.sample_rate * 4)).astype(np.float32), config)
                            for _ in range(3)])
    assert frechet_distance(real, real) < 1e-6 * frechet_distance(real, noise)
    assert frechet_distance(real, noise) > frechet_distance(clips[0], np.concatenate(clips[1:]))


def test_eval_plot_writes_the_png(generated, tmp_path):
    out = tmp_path / "plots" / "requested_vs_extracted.png"
    report = str(generated / "generated" / "report.json")
    assert chordflow_eval(["plot", "--report", report, "--clip", "clip_00001_given", "--out", str(out),
                           "--params", str(tmp_path / "absent.yaml")]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert chordflow_eval(["plot", "--report", report, "--clip", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_eval_score_rejects_a_bad_report(tmp_path, capsys):
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    assert chordflow_eval(["score", "--report", str(bad), "--out", str(tmp_path / "m.json")]) == 2
    assert "report.json" in capsys.readouterr().err and not (tmp_path / "m.json").exists()


def test_melody_is_skipped_with_a_reason_when_weights_are_missing(tmp_path, monkeypatch):
    from model.evaluation.analysis import Analysers
    from model.evaluation.config import AnalyserConfigs

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "no_weights"))
    analysers = Analysers(AnalyserConfigs(), ModelEvalConfig())
    assert not analysers.ready("melody")
    assert "WeightsError" in analysers.skipped["melody"] and "multif0.h5" in analysers.skipped["melody"]
    assert analysers.ready("chords") and "chords" not in analysers.skipped


def test_an_unreadable_request_file_fails_only_its_own_score(tmp_path):
    from types import SimpleNamespace

    from model.evaluation.analysis import Analysers
    from model.evaluation.config import AnalyserConfigs
    from model.evaluation.score import clip_row
    from music.frames import frames_for_seconds
    from stages.chords import Vocabulary, timeline_to_frames

    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    clip = dataclasses.replace(_request("a", "g", (("C", 0.0), ("G", 2.0))), melody=tmp_path / "broken.npy")
    frames = timeline_to_frames(clip.chords, frames_for_seconds(4.0, 50.0), Vocabulary.jasco())
    heard = SimpleNamespace(timeline=[("C", 0.0, 2.0), ("G", 2.0, 4.0)], chord_frames=frames, duration_s=4.0,
                            melody_index=np.zeros(200, np.int16), onsets=None, seconds=1.0, errors={},
                            judged=None)
    row = clip_row(clip, heard, {}, {"a": clip}, Analysers(AnalyserConfigs(), ModelEvalConfig()))
    assert row["chord_accuracy"] == 1.0 and row["chord_iou"] == 1.0 and row["no_chord_fraction"] == 0.0
    assert "melody_accuracy" not in row and "score_melody" in row["errors"] and row["chance_clips"] == {}


def test_onsets_of_a_longer_reference_count_within_the_clip_only(make_audio, tmp_path):
    from types import SimpleNamespace

    from model.evaluation.analysis import Analysers
    from model.evaluation.config import AnalyserConfigs
    from model.evaluation.score import clip_row

    rate = 32000
    clicks = np.zeros(rate * 4, np.float32)
    for k in range(1, 8):  # a click every 0.5 s for 4 s
        clicks[k * rate // 2: k * rate // 2 + 64] = np.hanning(64) * 0.8
    reference = make_audio("beat.wav", sample_rate=rate, data=clicks)
    clip = dataclasses.replace(_request("a", "g"), duration_s=2.2, drums=reference)
    heard = SimpleNamespace(timeline=None, chord_frames=None, melody_index=None, onsets=np.array([0.5, 1.0, 1.5, 2.0]),
                            duration_s=2.2, seconds=0.1, errors={}, judged=None)
    row = clip_row(clip, heard, {}, {"a": clip}, Analysers(AnalyserConfigs(), ModelEvalConfig()))
    assert row["onset_f1"] == pytest.approx(1.0) and row["errors"] == {}


# ----------------------------------------------------------------------------- independent judges
def test_the_independent_judges_hear_the_real_clips_and_name_themselves(scored):
    metrics, rows = scored
    given = metrics["groups"]["chords_given"]
    judges = metrics["judges"]
    assert judges["chord_accuracy_cnn"]["name"] == "madmom_cnn_crf" and "chordino" in judges["chord_accuracy"]["name"]
    assert judges["melody_accuracy_crepe"]["package"] == "torchcrepe"
    assert judges["tonal_energy_fraction"]["name"] == "tonal_energy_fraction"
    # the CNN hears the rendered progressions, and not a progression the audio does not play
    assert given["chord_accuracy_cnn"]["n"] == 3 and given["chord_accuracy_cnn"]["mean"] > 0.6
    assert given["chord_accuracy_cnn_chance"]["mean"] < given["chord_accuracy_cnn"]["mean"] - 0.3
    assert rows["wrong_chords"]["chord_accuracy_cnn"] < 0.2
    assert rows["clip_00000_given"]["judged_chords"][0][1] == 0.0
    assert given["no_chord_fraction_cnn"]["mean"] < 0.2
    # CREPE follows the rendered melody line better than another clip's
    assert given["melody_accuracy_crepe"]["mean"] > given["melody_accuracy_crepe_chance"]["mean"]
    assert given["melody_pitch_class_accuracy_crepe"]["mean"] >= given["melody_accuracy_crepe"]["mean"]
    # real renders have stable partials
    assert given["tonal_energy_fraction"]["mean"] > 0.3


def test_realism_on_the_pretrained_embedding_and_the_real_clips_clarity(scored):
    realism = scored[0]["realism"]
    frechet = realism["frechet"]
    assert frechet["embedding"] == "musicnn" and frechet["dimensions"] == 200 and frechet["reference_clips"] == 3
    # chords_given holds exactly the reference clips (their 200-d vectors are O(1): distances between
    # different sets are >= 1); with 4-5 s clips and 3 s patches a half may be too small for real_vs_real
    assert frechet["groups"]["chords_given"] < 1e-3
    assert frechet["distance"] > frechet["groups"]["chords_given"]  # clip 0 twice shifts the whole set
    real = realism["tonal_energy_fraction"]["real"]
    assert real["n"] == 3 and real["mean"] == pytest.approx(scored[0]["groups"]["chords_given"]["tonal_energy_fraction"]["mean"])


def test_adherence_reads_each_judge_against_its_own_ceiling():
    from model.evaluation.adherence import adherence_table, markdown

    def stats(value):
        return {"mean": value, "std": 0.0, "n": 4}

    judges = {"chord_accuracy": {"name": "chordino (chords stage)"}, "chord_accuracy_cnn": {"name": "madmom_cnn_crf"}}
    generated = {"judges": judges, "groups": {
        "chords_given": {"chord_accuracy": stats(0.8), "chord_accuracy_cnn": stats(0.7),
                         "chord_accuracy_chance": stats(0.05), "chord_accuracy_cnn_chance": stats(0.04),
                         "tonal_energy_fraction": stats(0.2)},
        "chords_dropped": {"chord_accuracy": stats(0.07), "chord_accuracy_cnn": stats(0.2)},
        "all_given": {"chord_accuracy": stats(0.69), "chord_accuracy_cnn": stats(0.215),
                      "tonal_energy_fraction": stats(0.1)}},
        "realism": {"frechet": {"embedding": "musicnn", "real_vs_real": 10.0,
                                "groups": {"chords_given": 25.0, "all_given": 80.0}},
                    "tonal_energy_fraction": {"real": {"mean": 0.5, "n": 8}}}}
    ceiling = {"groups": {"ceiling": {"chord_accuracy": stats(0.88), "chord_accuracy_cnn": stats(0.77),
                                      "tonal_energy_fraction": stats(0.25)}},
               "realism": {"frechet": {"distance": 20.0}}}
    table = adherence_table(generated, ceiling)
    rows = {(r["control"], r["metric"]): r for r in table["rows"]}
    cnn_all = rows[("chords (all controls)", "chord_accuracy_cnn")]
    assert cnn_all["judge"] == "madmom_cnn_crf" and cnn_all["ceiling"] == 0.77
    assert cnn_all["chords_text"] == 0.7 and not cnn_all["meets_all_controls_target"]
    assert not cnn_all["meets_conditioned_target"]
    assert rows[("chords", "chord_accuracy")]["meets_dropped_target"]
    assert not rows[("chords", "chord_accuracy_cnn")]["meets_dropped_target"]  # 0.2 > 0.04 + 0.05
    frechet = {r["group"]: r for r in table["realism"]["frechet"]}
    assert frechet["chords_given"]["meets_target"] and not frechet["all_given"]["meets_target"]
    assert frechet["ceiling"]["over_real_vs_real"] == 2.0
    clarity = table["realism"]["tonal_energy_fraction"]
    assert clarity["groups"]["ceiling"] == 0.25 and clarity["over_real"]["all_given"] == pytest.approx(0.2)
    assert "madmom_cnn_crf" in markdown(table) and "musicnn" in markdown(table)


def test_spectrograms_of_one_request_real_ceiling_and_generated(generated, tmp_path, capsys):
    from pipeline.manifest import read_manifest

    manifest = generated / "reference.parquet"
    tracks = dict(zip(*(read_manifest(manifest).column(c).to_pylist() for c in ("path", "track_id"))))
    real = next(path for path in tracks if path.endswith("clip_00000.wav"))
    ceiling = tmp_path / "ceiling" / "report.json"
    ceiling.parent.mkdir()
    ceiling.write_text(json.dumps({"format": REPORT_FORMAT, "sample_rate": 44100, "clips": [
        {"id": "clip_00000", "wav": str(Path(real).resolve()), "duration_s": 4.0, "group": "ceiling",
         "source_track": tracks[real]}]}))
    out = tmp_path / "spectrograms.png"
    report = generated / "generated" / "report.json"
    argv = ["spectrograms", "--report", str(report), "--ceiling", str(ceiling), "--manifest", str(manifest),
            "--out", str(out)]
    assert chordflow_eval([*argv, "--clip", "clip_00000"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from model.evaluation.spectrograms import request_rows

    rows = request_rows(report, ceiling, manifest, "clip_00000")
    assert [name.split(" ")[0] for name, _ in rows] == ["real", "decode", "generated:"]
    assert chordflow_eval([*argv, "--clip", "clip_00009"]) == 2 and "clip_00009" in capsys.readouterr().err
