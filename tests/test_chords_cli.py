"""``chordflow chords ...``: extract, eval (mir_eval metrics), plot, build-vocab, export-audiocraft."""

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import yaml

from chordflow.cli import main
from pipeline.manifest import build_manifest, write_manifest
from stages.chords.evaluate import boundary_errors, score_track, weighted
from stages.chords.vocab import Vocabulary
from tests.test_chords_stage import SR, progression_audio, truth_segments

PROGRESSIONS = {
    "song_a": [("C", 1.7), ("G", 2.05), ("Am", 1.55), ("F", 2.3)],
    "song_b": [("Am", 1.3), ("F", 1.85), ("C", 2.4), ("G", 1.45), ("Am", 1.6)],
    "song_c": [("G", 2.2), ("C", 1.35), ("F", 1.9), ("Am", 1.75)],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny corpus (audio + truth) with a manifest, extracted once through the CLI."""
    root = tmp_path_factory.mktemp("chords_cli")
    (root / "audio").mkdir()
    (root / "truth").mkdir()
    for name, progression in PROGRESSIONS.items():
        sf.write(root / "audio" / f"{name}.flac", progression_audio(progression), SR, format="FLAC")
        chords = [{"label": l, "start": s, "end": e} for l, s, e in truth_segments(progression)]
        (root / "truth" / f"{name}.json").write_text(json.dumps({"chords": chords}))
    sf.write(root / "audio" / "no_truth.wav", progression_audio(PROGRESSIONS["song_a"][:2]), SR)
    table, rejects = build_manifest([root / "audio"])
    write_manifest(table, rejects, root / "manifest.parquet")
    (root / "params.yaml").write_text(yaml.safe_dump({"sharding": {"tracks_per_shard": 2}, "chords": {}}))
    code = _chordflow(root, "extract", "--manifest", "manifest.parquet", "--out", "features", "--params", "params.yaml",
                      "--executor", "serial", "--no-progress")
    assert code == 0
    return root


def _chordflow(root, *args):
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        return main(["chords", *args])
    finally:
        os.chdir(cwd)


def test_extract_rerun_is_a_no_op(project, capsys):
    code = _chordflow(project, "extract", "--manifest", "manifest.parquet", "--out", "features", "--params",
                      "params.yaml", "--executor", "serial", "--no-progress")
    assert code == 0
    assert "2 shards (0 written, 2 already complete)" in capsys.readouterr().out


def test_eval_writes_metrics_and_prints_a_table(project, capsys):
    code = _chordflow(project, "eval", "--features", "features", "--truth", "truth", "--out", "metrics/chords.json")
    assert code == 0
    out = capsys.readouterr().out
    assert "| majmin |" in out and "| mirex |" in out and "chord changes:" in out
    metrics = json.loads((project / "metrics" / "chords.json").read_text())
    assert metrics["tracks"] == 3 and metrics["tracks_without_truth"] == 1 and metrics["extraction_errors"] == 0
    for name in ("root", "majmin", "thirds", "mirex"):
        assert 0.97 <= metrics[name] <= 1.0, (name, metrics[name])
        assert metrics["track_min"][name] <= metrics["track_mean"][name] <= 1.0
    assert metrics["boundaries"]["changes"] == sum(len(p) - 1 for p in PROGRESSIONS.values())
    assert metrics["boundaries"]["within_1_frame"] == 1.0
    assert metrics["frame_index"] > 0.97 and metrics["frame_rate"] == 50.0


def test_eval_errors_are_reported_not_raised(project, capsys):
    assert _chordflow(project, "eval", "--features", "nowhere") == 2
    assert "nowhere" in capsys.readouterr().err
    assert _chordflow(project, "eval", "--features", "features", "--truth", "audio") == 2
    assert "no extracted track has a truth file" in capsys.readouterr().err


def test_score_track_perfect_and_wrong():
    truth = truth_segments(PROGRESSIONS["song_a"])
    perfect = score_track(truth, truth)
    assert all(weighted([perfect[name]]) == 1.0 for name in perfect)
    up_a_semitone = [({"C": "C#", "G": "Ab", "Am": "Bbm", "F": "F#"}[l], s, e) for l, s, e in truth]
    wrong = score_track(truth, up_a_semitone)
    assert weighted([wrong["root"]]) == 0.0 and weighted([wrong["majmin"]]) == 0.0
    late = [(l, s + 0.1 if s else s, e + 0.1 if e < truth[-1][2] else e) for l, s, e in truth]
    assert boundary_errors(truth, late) == pytest.approx([0.1, 0.1, 0.1])
    assert 0.9 < weighted([score_track(truth, late)["majmin"]]) < 1.0


def test_plot_writes_a_png(project, capsys):
    code = _chordflow(project, "plot", "--clip", "song_b", "--features", "features", "--truth", "truth", "--out", "p/b.png")
    assert code == 0
    png = project / "p" / "b.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    from pipeline.reader import StageStore

    track = next(row["track_id"] for row in StageStore(project / "features") if row["path"].endswith("no_truth.wav"))
    assert _chordflow(project, "plot", "--track", track, "--features", "features", "--out", "p/n.png") == 0
    assert (project / "p" / "n.png").is_file()
    assert _chordflow(project, "plot", "--clip", "nope", "--features", "features", "--out", "p/x.png") == 2
    assert "nope" in capsys.readouterr().err


def test_build_vocab_is_deterministic(project):
    assert _chordflow(project, "build-vocab", "--features", "features", "--out", "v1.json") == 0
    assert _chordflow(project, "build-vocab", "--features", "features", "--out", "v2.json") == 0
    first = (project / "v1.json").read_bytes()
    assert first == (project / "v2.json").read_bytes()
    mapping = json.loads(first)
    labels = sorted(mapping, key=mapping.get)
    assert labels[0] == "N" and labels[-1] == "UNK" and set(labels[1:-1]) == {"C", "G", "Am", "F"}
    # ordered by frames covered: Am and C cover the most time in the three songs
    seconds = {}
    for progression in [*PROGRESSIONS.values(), PROGRESSIONS["song_a"][:2]]:
        for label, s in progression:
            seconds[label] = seconds.get(label, 0) + s
    assert labels[1:-1] == sorted(seconds, key=lambda l: (-seconds[l], l))
    # the vocabulary is usable by the stage and round-trips
    assert Vocabulary.from_json(project / "v1.json").mapping() == mapping
    assert _chordflow(project, "build-vocab", "--features", "features", "--out", "v3.json", "--max-size", "4") == 0
    assert len(json.loads((project / "v3.json").read_text())) == 4


def test_export_audiocraft_layout(project):
    assert _chordflow(project, "export-audiocraft", "--features", "features", "--out", "ac") == 0
    # a test may read the pickles it just wrote; the product never reads pickles
    chords = pickle.loads((project / "ac" / "chords_per_track.pkl").read_bytes())
    mapping = pickle.loads((project / "ac" / "chord_to_index_mapping.pkl").read_bytes())
    assert mapping == Vocabulary.jasco().mapping()
    assert set(chords) == {"song_a", "song_b", "song_c", "no_truth"}
    changes = chords["song_b"]
    assert all(isinstance(c, tuple) and c[0] in mapping and isinstance(c[1], float) for c in changes)
    found = [(l, s) for l, s in changes if l != "N"]
    assert [l for l, _ in found] == [l for l, _ in PROGRESSIONS["song_b"]]
    assert np.all(np.diff([s for _, s in changes]) > 0)
