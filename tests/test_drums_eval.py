"""Evaluation of drum stems: the metrics themselves, and ``chordflow drums eval/plot`` on a tiny
rendered corpus (2 clips with drums, 1 without)."""

import json

import numpy as np
import pytest

from pipeline.audio import load_audio
from chordflow.cli import main as chordflow
from pipeline.corpus.build import render_corpus
from pipeline.corpus.config import CorpusConfig
from pipeline.manifest import build_manifest, write_manifest
from pipeline.planning import ShardingConfig
from pipeline.runner import run_stage
from stages.drums.config import OnsetConfig
from stages.drums.evaluate import SI_SDR_LIMIT_DB, merge_onsets, onset_scores, read_index, score_clip, si_sdr


def test_si_sdr_known_values():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(48000)
    noise = rng.standard_normal(48000)
    noise -= noise @ reference / (reference @ reference) * reference  # orthogonal to the reference
    noise *= np.linalg.norm(reference) / np.linalg.norm(noise) * 10 ** (-10 / 20)
    assert si_sdr(reference + noise, reference) == pytest.approx(10.0, abs=0.01)
    assert si_sdr(0.1 * (reference + noise), reference) == pytest.approx(10.0, abs=0.01)  # scale-invariant
    assert si_sdr(reference, reference) == pytest.approx(SI_SDR_LIMIT_DB)
    assert si_sdr(np.zeros(100), rng.standard_normal(100)) == pytest.approx(-SI_SDR_LIMIT_DB)
    with pytest.raises(ValueError, match="shapes differ"):
        si_sdr(np.zeros(3), np.zeros(4))


def test_merge_onsets_and_onset_scores():
    np.testing.assert_allclose(merge_onsets([1.0, 0.5, 0.5, 0.51, 0.6]), [0.5, 0.6, 1.0])
    assert onset_scores(np.array([0.5, 1.0]), np.array([0.52, 1.2])) == pytest.approx((0.5, 0.5, 0.5))
    assert onset_scores(np.array([0.5]), np.zeros(0)) == (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("drums_eval")
    corpus = root / "corpus"
    config = CorpusConfig(n=3, seed=0, clip_seconds=(3.0, 4.0), drum_probability=0.6, format_slice_every=2, workers=2)
    summary = render_corpus(config, corpus, progress=False)
    assert [e["has_drums"] for e in summary.entries] == [True, False, True]
    table, rejects = build_manifest([corpus / "audio"])
    write_manifest(table, rejects, root / "manifest.parquet")
    report = run_stage("drums", {}, root / "manifest.parquet", root / "drums", ShardingConfig(), progress=False)
    assert report.ok and report.track_errors == 0
    return root, corpus


def test_eval_cli_writes_dvc_metrics(rendered):
    root, corpus = rendered
    out, per_clip = root / "metrics" / "drums.json", root / "clips.json"
    assert chordflow(["drums", "eval", "--features", str(root / "drums"), "--corpus", str(corpus), "--out", str(out),
                      "--per-clip", str(per_clip), "--params", str(root / "none.yaml"), "--no-progress"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["separator"] == "hpss" and metrics["onset_window_s"] == 0.05
    assert (metrics["clips"], metrics["clips_with_drums"], metrics["clips_without_drums"]) == (3, 2, 1)
    assert 0.5 <= metrics["onset_f1"] <= 1.0
    assert metrics["si_sdr_improvement_db"] >= 5.0  # HPSS beats the unprocessed mix by a wide margin
    assert metrics["si_sdr_db"] > metrics["si_sdr_mix_db"]
    assert metrics["drumless_stem_to_mix_db"] < -10.0  # little of a drumless mix ends up in the stem
    clips = json.loads(per_clip.read_text())
    drumless = [c for c in clips if not c["has_drums"]]
    assert len(drumless) == 1 and drumless[0]["si_sdr_db"] is None and drumless[0]["onset_f1"] is None
    assert all(c["si_sdr_db"] is not None for c in clips if c["has_drums"])


def test_truth_scores_as_truth_and_mix_scores_as_baseline(rendered):
    _, corpus = rendered
    entry = next(e for e in read_index(corpus).values() if e["has_drums"])
    true_stem, sr = load_audio(corpus / entry["drum_stem"], sample_rate=32000, channels=1)
    oracle = score_clip(true_stem, sr, entry, corpus, "t", OnsetConfig())
    assert oracle.si_sdr_db >= 60.0 and oracle.onset_f1 >= 0.9
    mix, _ = load_audio(corpus / entry["audio"], sample_rate=32000, channels=1)
    baseline = score_clip(mix, sr, entry, corpus, "t", OnsetConfig())
    assert baseline.si_sdr_db == pytest.approx(baseline.si_sdr_mix_db)
    assert baseline.stem_to_mix_db == pytest.approx(0.0, abs=1e-6)


def test_plot_cli_draws_a_png(rendered):
    root, corpus = rendered
    out = root / "plots" / "drums.png"
    assert chordflow(["drums", "plot", "--features", str(root / "drums"), "--corpus", str(corpus),
                      "--out", str(out), "--params", str(root / "none.yaml")]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chordflow(["drums", "plot", "--features", str(root / "drums"), "--corpus", str(corpus), "--clip", "nope",
                      "--out", str(out), "--params", str(root / "none.yaml")]) == 1


def test_eval_leaves_out_unreadable_clips_and_reports_bad_folders(rendered, tmp_path, capsys):
    import shutil

    root, corpus = rendered
    broken = tmp_path / "corpus"
    shutil.copytree(corpus, broken)
    entry = next(e for e in read_index(broken).values() if e["has_drums"])
    (broken / entry["drum_stem"]).write_bytes(b"not audio")
    out = tmp_path / "metrics.json"
    args = ["drums", "eval", "--features", str(root / "drums"), "--out", str(out), "--params", str(tmp_path / "none.yaml"),
            "--no-progress", "--corpus"]
    assert chordflow(args + [str(broken)]) == 0
    metrics = json.loads(out.read_text())
    assert (metrics["clips"], metrics["clips_failed"], metrics["clips_with_drums"]) == (2, 1, 1)
    assert chordflow(["drums", "eval", "--features", str(tmp_path / "nothing"), "--corpus", str(corpus),
                      "--out", str(out), "--params", str(tmp_path / "none.yaml")]) == 1
    assert "no shards found" in capsys.readouterr().out
