"""The same-size Fréchet yardstick: the held-out requests' own real clips against the reference
without them (``chordflow eval score --heldout-real``), and the adherence read against it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model.evaluation.embedding import (EmbeddingConfig, HeldoutReal, embed, embed_manifest, frechet_distance,
                                        frechet_section)
from model.sampling.generate import REPORT_FORMAT

RATE = 22050
SECONDS = 6.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """Five 6 s tracks (a tone each, a little noise) and their manifest; returns (manifest, track ids)."""
    from pipeline.manifest import build_manifest, read_manifest, write_manifest

    root = tmp_path_factory.mktemp("yardstick")
    rng = np.random.default_rng(0)
    time = np.arange(int(RATE * SECONDS)) / RATE
    for number, pitch in enumerate((220.0, 247.0, 262.0, 294.0, 330.0)):
        tone = 0.3 * np.sin(2 * np.pi * pitch * time * (1 + 0.01 * time)) + 0.02 * rng.normal(size=time.size)
        sf.write(root / f"track_{number}.wav", tone.astype(np.float32), RATE)
    table, rejects = build_manifest([root])
    write_manifest(table, rejects, root / "manifest.parquet")
    return root / "manifest.parquet", read_manifest(root / "manifest.parquet").column("track_id").to_pylist()


def test_heldout_tracks_leave_the_reference_and_are_measured_over_their_seconds(corpus):
    manifest, ids = corpus
    config = EmbeddingConfig()
    heldout = HeldoutReal(((ids[3], 3.0), (ids[1], 3.0)))
    memo: dict = {}
    everything, _ = embed_manifest(manifest, config, progress=False, memo=memo)
    reference, failed = embed_manifest(manifest, config, progress=False, memo=memo, heldout=heldout)
    real, real_failed = embed_manifest(manifest, config, progress=False, memo=memo, heldout=heldout, real=True)
    assert not failed and not real_failed and len(everything) == 5
    assert [len(e) for e in reference] == [len(everything[i]) for i in (0, 2, 4)]
    assert np.allclose(reference[1], everything[2])
    # in the yardstick's order, only their first 3 s
    assert [len(e) for e in real] == [3, 3]
    for embedded, number in zip(real, (3, 1)):
        audio, _ = sf.read(manifest.parent / f"track_{number}.wav", dtype="float32")
        assert np.allclose(embedded, embed(audio[:int(3 * RATE)], config), atol=1e-4)
    section = frechet_section({"a": everything[0], "b": everything[4]}, {"a": "g", "b": "g"}, reference, failed,
                              manifest, {"embedding": "test"}, real)
    assert section["heldout_real"] == pytest.approx(frechet_distance(np.concatenate(real), np.concatenate(reference)),
                                                    abs=1e-4)
    assert section["heldout_real_clips"] == 2 and section["reference_clips"] == 3
    assert "heldout_real" not in frechet_section({"a": everything[0]}, {"a": "g"}, reference, failed, manifest, {})
    named = frechet_section({"a": everything[0]}, {"a": "g"}, reference, failed, manifest, {}, real[:1],
                            ["track_9.wav: DecodeError: truncated"])
    assert named["heldout_real_failed"] == 1 and "track_9.wav" in named["heldout_real_failed_examples"][0]


def test_heldout_real_from_a_report_and_its_errors(corpus, tmp_path):
    manifest, ids = corpus
    def clip(name: str, seconds: float, **fields: str) -> dict:
        return {"id": name, "wav": f"clips/{name}.wav", "duration_s": seconds, **fields}

    def write(name: str, clips: list[dict]) -> Path:
        (tmp_path / name).write_text(json.dumps({"format": REPORT_FORMAT, "clips": clips}))
        return tmp_path / name

    report = write("report.json", [clip("heldout_000", 2.5, source_track=ids[0]),
                                   clip("heldout_001", 4.0, source_track=ids[2]), clip("other", 1.0)])
    heldout = HeldoutReal.from_report(report)
    assert heldout.tracks == ((ids[0], 2.5), (ids[2], 4.0)) and heldout.ids == {ids[0], ids[2]}
    plain = write("plain.json", [clip("x", 1.0)])
    with pytest.raises(ValueError, match="plain.json.*source_track"):
        HeldoutReal.from_report(plain)
    with pytest.raises(ValueError, match="absent.json"):
        HeldoutReal.from_report(tmp_path / "absent.json")
    stranger = HeldoutReal((("no-such-track", 1.0), (ids[0], 1.0)))
    with pytest.raises(ValueError, match="no-such-track"):
        embed_manifest(manifest, EmbeddingConfig(), progress=False, heldout=stranger, real=True)


def test_eval_score_names_a_bad_heldout_report(tmp_path, capsys):
    from model.evaluation.cli import add_cli

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "score", "--report", str(tmp_path / "r.json"), "--heldout-real",
                              str(tmp_path / "nope.json"), "--params", str(tmp_path / "absent.yaml")])
    assert args.func(args) == 2
    assert "nope.json" in capsys.readouterr().err


def test_adherence_reads_realism_against_the_heldout_real_clips_when_measured():
    from model.evaluation.adherence import adherence_table, markdown

    def generated(**frechet):
        return {"groups": {"chords_given": {"chord_accuracy": {"mean": 0.5, "n": 2}}},
                "realism": {"frechet": {"embedding": "musicnn", "real_vs_real": 10.0, **frechet,
                                        "groups": {"chords_given": 50.0, "all_given": 70.0}}}}

    ceiling = {"groups": {}, "realism": {"frechet": {"distance": 30.0}}}
    rows = {r["group"]: r for r in adherence_table(generated(heldout_real=20.0), ceiling)["realism"]["frechet"]}
    assert rows["chords_given"]["over_heldout_real"] == 2.5 and rows["chords_given"]["over_real_vs_real"] == 5.0
    assert rows["chords_given"]["yardstick"] == "heldout_real" and rows["chords_given"]["meets_target"]
    assert not rows["all_given"]["meets_target"] and rows["ceiling"]["over_heldout_real"] == 1.5
    halves = {r["group"]: r for r in adherence_table(generated(), ceiling)["realism"]["frechet"]}
    assert halves["chords_given"]["yardstick"] == "real_vs_real" and not halves["chords_given"]["meets_target"]
    assert halves["chords_given"]["over_heldout_real"] is None
    assert "held-out real clips" in markdown(adherence_table(generated(heldout_real=20.0), ceiling))


def test_an_unreadable_heldout_clip_is_named_not_dropped(tmp_path):
    from pipeline.manifest import build_manifest, read_manifest, write_manifest

    for name, pitch in (("good", 220.0), ("broken", 330.0)):  # different content: no duplicate is dropped
        tone = 0.3 * np.sin(2 * np.pi * pitch * np.arange(int(RATE * 3.0)) / RATE)
        sf.write(tmp_path / f"{name}.wav", tone.astype(np.float32), RATE)
    table, rejects = build_manifest([tmp_path])
    write_manifest(table, rejects, tmp_path / "manifest.parquet")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")  # truncated after the manifest was made
    ids = read_manifest(tmp_path / "manifest.parquet").column("track_id").to_pylist()
    real, failed = embed_manifest(tmp_path / "manifest.parquet", EmbeddingConfig(), progress=False,
                                  heldout=HeldoutReal(tuple((track, 2.0) for track in ids)), real=True)
    assert len(real) == 1 and len(failed) == 1 and "broken.wav" in failed[0], failed
