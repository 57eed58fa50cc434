"""Editing a user's clip: continuation and in/outpainting keep their frames exactly; seams measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from jasco_fixture import Fixture, generator_for, require_fixture
from model.evaluation.seams import edit_seams, seam_flux_ratio
from model.sampling.editing import EditError, free_frames

RATE = 32000


@pytest.fixture(scope="module")
def generator():
    return generator_for(Fixture(require_fixture("tiny_cdm")), solver="euler", steps=2, seconds=4.0)


@pytest.fixture(scope="module")
def clip():
    t = np.arange(4 * RATE) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def encoded(generator, clip) -> torch.Tensor:
    return torch.from_numpy(generator.stats.normalise(generator.codec.encode(clip), generator.normalisation))


def test_continuation_keeps_the_first_seconds_exactly(generator, clip):
    audio, latents = generator.generate_music(["jazz trio"], audio=clip, audio_sample_rate=RATE,
                                              continue_after=1.5, return_latents=True)
    user = encoded(generator, clip)
    kept = generator.frames_for(1.5)
    assert torch.equal(latents[0, :kept], user[:kept])
    assert not torch.allclose(latents[0, kept:], user[kept: latents.shape[1]])
    assert audio.shape == (1, 4 * RATE)


def test_inpainting_keeps_everything_outside_the_spans(generator, clip):
    _, latents = generator.generate_music(["jazz trio"], audio=clip, audio_sample_rate=RATE,
                                          regenerate=[[1.0, 2.0], [3.0, 3.5]], return_latents=True)
    user = encoded(generator, clip)
    free = free_frames(latents.shape[1], 50.0, None, [[1.0, 2.0], [3.0, 3.5]])
    assert free.sum() == 75
    assert torch.equal(latents[0, ~free], user[~free])
    assert (latents[0, free] - user[free]).abs().max() > 0.1


def test_outpainting_past_the_clip_end(generator, clip):
    generator.set_generation_params(duration=6.0)
    try:
        _, latents = generator.generate_music(["jazz trio"], audio=clip, audio_sample_rate=RATE,
                                              regenerate=[[5.0, 6.0]], return_latents=True)
    finally:
        generator.set_generation_params(duration=4.0)
    user = encoded(generator, clip)
    assert latents.shape[1] == 300 and torch.equal(latents[0, :200], user[:200])


@pytest.mark.parametrize("kwargs, message", [
    ({"continue_after": 5.0}, "must lie inside the piece"),
    ({"regenerate": [[2.0, 1.0]]}, "need 0 <= start < end"),
    ({"regenerate": []}, "at least one"),
    ({"continue_after": 1.0, "regenerate": [[1.0, 2.0]]}, "one of them"),
    ({}, "one of them"),
])
def test_bad_edits_are_clear_errors(generator, clip, kwargs, message):
    with pytest.raises(EditError, match=message):
        generator.generate_music(["x"], audio=clip, audio_sample_rate=RATE, **kwargs)


def test_a_clip_shorter_than_the_kept_part_is_refused(generator, clip):
    with pytest.raises(EditError, match="shorter than the 150 frames to keep"):
        generator.generate_music(["x"], audio=clip[: RATE], audio_sample_rate=RATE, continue_after=3.0)


def test_the_seam_measure_sees_a_cut_and_not_a_smooth_clip():
    t = np.arange(3 * RATE) / RATE
    rng = np.random.default_rng(0)
    smooth = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.005 * rng.standard_normal(len(t))   # a steady texture
    cut = smooth.copy()
    cut[int(1.5 * RATE):] = 0.6 * np.sign(np.sin(2 * np.pi * 97 * t[int(1.5 * RATE):]))   # a hard switch at 1.5 s
    steady, switched = seam_flux_ratio(smooth, RATE, [1.5]), seam_flux_ratio(cut, RATE, [1.5])
    print(f"seam flux ratio: steady {steady['flux_ratio']}, hard switch {switched['flux_ratio']}")
    assert steady["flux_ratio"] < 1.5 and switched["flux_ratio"] > 5.0
    assert edit_seams(None, [[0.0, 1.0], [2.0, 3.0]], 3.0) == [1.0, 2.0]
    assert edit_seams(2.5, None, 10.0) == [2.5]


def test_editing_through_the_prompts_jsonl(tmp_path, clip):
    import yaml

    from chordflow.cli import main

    fixture = Fixture(require_fixture("tiny_cdm"))
    sf.write(tmp_path / "mine.wav", clip, RATE)
    lines = [{"id": "cont", "description": "jazz trio", "duration": 4.0, "audio": "mine.wav", "continue_after": 2.0,
              "chords": "C | G7", "bpm": 120},
             {"id": "inpaint", "duration": 4.0, "audio": "mine.wav", "regenerate": [[1.0, 2.0]]},
             {"id": "both", "duration": 4.0, "audio": "mine.wav", "regenerate": [[1.0, 2.0]], "continue_after": 1.0},
             {"id": "too_far", "duration": 4.0, "audio": "mine.wav", "continue_after": 9.0}]
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generate": {"solver": "euler", "steps": 1}}))
    assert main(["generate", "--checkpoint", str(fixture.folder), "--t5", str(fixture.folder / "hf_t5"),
                 "--prompts", str(tmp_path / "prompts.jsonl"), "--out", str(tmp_path / "out"),
                 "--params", str(tmp_path / "params.yaml"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    clips = {c["id"]: c for c in report["clips"]}
    assert set(clips) == {"cont", "inpaint"}
    assert clips["cont"]["edit"]["seams"]["seams_s"] == [2.0]
    assert clips["inpaint"]["edit"]["seams"]["seams_s"] == [1.0, 2.0]
    assert clips["inpaint"]["edit"]["seams"]["flux_ratio"] > 0
    reasons = " ".join(r["reason"] for r in report["rejects"])
    assert "exactly one of 'continue_after', 'regenerate'" in reasons and "must lie inside the piece" in reasons
