"""Sampler API (every subset of controls), windowed continuation, batch generation, held-out prompts."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from model.config import ModelParams, TrainConfig
from music.conditions import CONDITION_NAMES
from model.sampling.sample import GenerationError, MusicGenerator
from model.training.train import Trainer, TrainPaths
from model_helpers import build_tiny_features

TINY_MODEL = ModelParams(dim=32, layers=2, heads=2, frames_per_token=2, chord_embed_dim=8, melody_embed_dim=8,
                         drum_embed_dim=8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    tiny = build_tiny_features(root / "features")
    paths = TrainPaths(manifest=str(tiny.manifest), latents=str(tiny.latents), chords=str(tiny.chords),
                       melody=str(tiny.melody), stats=str(tiny.stats), out_dir=str(root / "run"),
                       metadata=str(tiny.metadata))
    Trainer(paths, TINY_MODEL, TrainConfig(steps=6, batch_size=4, segment_seconds=1.0, warmup_steps=2,
                                           eval_every=0, normalisation="per_dim")).run(progress=False)
    generator = MusicGenerator.from_checkpoint(str(root / "run" / "checkpoint.pt"), device="cpu")
    # random weights everywhere so that every control visibly changes the output
    torch.manual_seed(0)
    with torch.no_grad():
        for p in generator.model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    generator.set_generation_params(duration=1.0, steps=2, cfg_coef_all=3.0)
    return tiny, generator, root


CHORDS = [("C", 0.0), ("G", 0.5)]


def controls(generator, subset):
    rate = generator.sample_rate
    clicks = (np.arange(rate) % 5512 < 200).astype(np.float32) * 0.5
    melody = np.zeros((53, 50), dtype=np.float32)
    melody[24, :] = 1.0
    return {"descriptions": ["a test piece"] if "text" in subset else [None],
            "chords": CHORDS if "chords" in subset else None,
            "drums_wav": clicks if "drums" in subset else None, "drums_sample_rate": rate,
            "melody_salience_matrix": melody if "melody" in subset else None}


@pytest.mark.parametrize("subset", [s for n in range(5) for s in itertools.combinations(CONDITION_NAMES, n)],
                         ids=lambda s: "+".join(s) or "none")
def test_api_with_each_subset_of_controls(trained, subset):
    _, generator, _ = trained
    kwargs = controls(generator, subset)
    cond = generator.build_conditions(kwargs["descriptions"], 50, kwargs["chords"], kwargs["drums_wav"],
                                      kwargs["drums_sample_rate"], kwargs["melody_salience_matrix"])
    assert cond.keep[0].tolist() == [name in subset for name in CONDITION_NAMES]
    audio = generator.generate_music(**kwargs)
    assert audio.shape[0] == 1 and abs(audio.shape[1] - generator.sample_rate) <= 441
    assert np.isfinite(audio).all()


def test_each_control_changes_the_result(trained):
    _, generator, _ = trained
    base = controls(generator, CONDITION_NAMES)
    _, reference = generator.generate_music(**base, return_latents=True)
    changed = {"chords": [("Am", 0.0), ("F", 0.5)], "drums_wav": base["drums_wav"][::-1].copy(),
               "melody_salience_matrix": np.roll(base["melody_salience_matrix"], 7, axis=0),
               "descriptions": ["something else entirely"]}
    for key, value in changed.items():
        _, latents = generator.generate_music(**{**base, key: value}, return_latents=True)
        assert not torch.allclose(latents, reference), key
    _, again = generator.generate_music(**base, return_latents=True)
    assert torch.equal(again, reference)  # same seed, same result


def test_per_item_controls_and_count_mismatch(trained):
    _, generator, _ = trained
    audio = generator.generate_music(["a", None], chords=[CHORDS, None])
    assert audio.shape[0] == 2
    with pytest.raises(GenerationError, match="2 descriptions"):
        generator.generate_music(["a", "b"], chords=[CHORDS, CHORDS, CHORDS])
    with pytest.raises(GenerationError, match="pitch bins"):
        generator.generate_music(["a"], melody_salience_matrix=np.zeros((40, 30), dtype=np.float32))


def test_longer_pieces_continue_window_by_window(trained, monkeypatch):
    _, generator, _ = trained
    import model.sampling.sample as sample_module

    windows = []
    real_solve = sample_module.solve

    def recording_solve(velocity, x0, **kwargs):
        result = real_solve(velocity, x0, **kwargs)
        windows.append(result.x1.clone())
        return result

    monkeypatch.setattr(sample_module, "solve", recording_solve)
    generator.set_generation_params(duration=3.0, window_seconds=1.2, overlap_seconds=0.4)
    try:
        audio, latents = generator.generate_music(["long"], chords=[("C", 0.0), ("F", 1.5), ("G", 2.5)],
                                                  return_latents=True)
    finally:
        generator.set_generation_params(duration=1.0, window_seconds=10.0, overlap_seconds=2.0)
    assert latents.shape[1] == 150 and len(windows) == 4  # starts 0, 40, 80, 120 (60-frame windows)
    # each window's first 20 frames reproduce the previous window's last 20 (pinned context)
    for previous, current in zip(windows, windows[1:]):
        assert torch.allclose(current[:, :20], previous[:, 40:60], atol=1e-4)
    assert abs(audio.shape[1] - 3 * generator.sample_rate) <= 441


def test_every_window_of_a_long_piece_sees_the_controls_at_its_own_time(trained, monkeypatch):
    """Long-form without drift by construction: window k is conditioned on the chord frames of its
    absolute span of the piece (not the first window's again), and the piece has its asked length."""
    _, generator, _ = trained
    seen = []
    real_velocity = MusicGenerator.guided_velocity
    monkeypatch.setattr(MusicGenerator, "guided_velocity",
                        lambda self, cond: seen.append(cond.chords.clone()) or real_velocity(self, cond))
    chords = [(label, 0.5 * i) for i, label in enumerate(["C", "F", "G", "Am"] * 3)]
    generator.set_generation_params(duration=6.0, window_seconds=1.2, overlap_seconds=0.4)
    try:
        n_frames = generator.frames_for(6.0)
        whole = generator.build_conditions(["long"], n_frames, chords).chords
        audio = generator.generate_music(["long"], chords=chords)
    finally:
        generator.set_generation_params(duration=1.0, window_seconds=10.0, overlap_seconds=2.0)
    starts = range(0, n_frames - 20, 40)  # 60-frame windows, 20 frames of overlap
    assert len(seen) == len(starts)
    for start, window in zip(starts, seen):
        assert torch.equal(window, whole[:, start: start + 60])
    assert len({tuple(w[0, :20].tolist()) for w in seen}) > 1   # the windows really see different chords
    assert abs(audio.shape[1] - 6 * generator.sample_rate) <= 441


def test_dopri5_and_midpoint_count_model_calls(trained):
    _, generator, _ = trained
    for solver, steps, calls in (("midpoint", 3, 6), ("euler", 5, 5)):
        generator.set_generation_params(solver=solver, steps=steps)
        generator.generate_music(["x"])
        assert generator.last_function_evaluations == calls
    generator.set_generation_params(solver="dopri5")
    generator.generate_music(["x"])
    assert generator.last_function_evaluations >= 6
    generator.set_generation_params(solver="euler", steps=2)


def test_batch_generation_from_a_three_line_jsonl(trained, tmp_path):
    from chordflow.cli import main

    tiny, generator, root = trained
    stem = tiny.drums / "stems" / f"{sorted(tiny.timelines)[0]}.flac"
    np.save(tmp_path / "tune.npy", np.eye(53, dtype=np.float32)[:, np.arange(60) % 53])
    lines = [
        {"id": "chords_only", "description": "calm organ", "chords": [["C", 0.0], ["Am", 0.6]], "duration": 1.2},
        {"id": "everything", "description": "busy organ", "chords": [["F", 0.0]], "drums": str(stem),
         "melody": "tune.npy", "duration": 1.2, "group": "full"},
        {"id": "broken", "description": "missing drums", "drums": "nowhere.wav"},
    ]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    params = tmp_path / "params.yaml"
    params.write_text("generate: {steps: 2, seconds: 1.0, batch_size: 2}\n"
                      "drums: {separator: hpss, sample_rate: 22050}\n")
    out = tmp_path / "out"
    assert main(["generate", "--checkpoint", str(root / "run" / "checkpoint.pt"), "--prompts", str(prompts),
                 "--out", str(out), "--params", str(params), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [c["id"] for c in report["clips"]] == ["chords_only", "everything"]
    assert len(report["rejects"]) == 1 and "nowhere.wav" in report["rejects"][0]["reason"]
    full = report["clips"][1]
    assert full["conditions"] == {"chords": True, "drums": True, "melody": True, "text": True}
    assert full["group"] == "full" and (out / full["melody"]).is_file()
    for clip in report["clips"]:
        audio, rate = sf.read(out / clip["wav"])
        assert rate == generator.sample_rate and abs(len(audio) / rate - 1.2) < 0.05
        assert 0.01 < np.abs(audio).max() <= 0.991  # peak limit 0.99 (+ 16-bit rounding)


def test_heldout_prompts_and_ceiling(trained, tmp_path):
    from chordflow.cli import main

    tiny, _, _ = trained
    out = tmp_path / "heldout"
    assert main(["heldout", "--manifest", str(tiny.manifest), "--metadata", str(tiny.metadata), "--chords",
                 str(tiny.chords), "--melody", str(tiny.melody), "--drums", str(tiny.drums), "--latents",
                 str(tiny.latents), "--out", str(out), "--seconds", "4", "--no-progress"]) == 0
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(prompts) == 2 * 3  # one valid + one test track, three groups each
    given = next(p for p in prompts if p["group"] == "chords_given")
    dropped = next(p for p in prompts if p["group"] == "chords_dropped")
    assert given["chords"] == given["score_chords"] and dropped["chords"] is None and dropped["score_chords"]
    ceiling = json.loads((out / "ceiling" / "report.json").read_text())
    assert len(ceiling["clips"]) == 2
    for clip in ceiling["clips"]:
        assert (out / "ceiling" / clip["wav"]).is_file() and (out / "ceiling" / clip["drums"]).is_file()


def test_a_prompt_with_its_own_seed_depends_on_nothing_else_in_the_file(trained, tmp_path):
    from model.sampling.generate import generate_batch_file

    _, generator, _ = trained
    saved = generator.params

    def run(name: str, lines: list[dict]) -> dict:
        prompts = tmp_path / f"{name}.jsonl"
        prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return generate_batch_file(generator, prompts, tmp_path / name, progress=False)

    def clips(name: str, lines: list[dict]) -> dict[str, bytes]:
        return {clip["id"]: (tmp_path / name / clip["wav"]).read_bytes() for clip in run(name, lines)["clips"]}

    seeded = {"id": "seeded", "description": "organ", "chords": [["C", 0.0]], "seed": 7}
    plain = [{"id": f"p{i}", "description": f"piece {i}", "duration": 1.0} for i in range(3)]
    try:
        alone = clips("alone", [seeded])
        mixed = clips("mixed", [plain[0], seeded, plain[1], plain[2]])
        without = clips("without", plain)
        reseeded = clips("reseeded", [{**seeded, "seed": 8}])
        bad = run("bad", [{**seeded, "seed": "seven"}])
    finally:
        generator.params = saved
    assert mixed["seeded"] == alone["seeded"] != reseeded["seeded"]
    assert all(mixed[key] == without[key] for key in without)  # prompts without a seed: as before
    assert not bad["clips"] and "seed 'seven'" in bad["rejects"][0]["reason"]
