"""``controls_from``: a song's chords, drums and melody, extracted by the project's stages, as controls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from model.sampling.generate import ControlLoader, ReferenceConfigs
from model.sampling.prompts import read_prompts
from model_helpers import SAMPLE_RATE, track_audio
from pipeline.audio import load_audio
from pipeline.stage import create_stage

WEIGHTS = __import__("conftest").REFERENCE_DIR.parent / "weights" / "deepsalience"


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    audio, timeline, _ = track_audio(["C", "Am", "F", "G"] * 2, 1.0, seed=3)
    path = tmp_path_factory.mktemp("song") / "song.wav"
    sf.write(path, audio, SAMPLE_RATE)
    return path, timeline


def test_the_song_timeline_is_the_chords_stage_timeline(song):
    path, _ = song
    loader = ControlLoader(ReferenceConfigs(), 50.0)
    controls = loader.song(path, ("chords",))
    stage = create_stage("chords", {})
    samples, rate = load_audio(path, sample_rate=stage.config.sample_rate, channels=1)
    stored = stage.extract(samples, rate)["timeline"]
    assert controls["chords"] == [[row["label"], row["start"]] for row in stored]
    assert len(controls["chords"]) >= 4 and controls["chords"][0][1] == 0.0


def test_the_song_gives_drums_and_melody_through_their_stages(song):
    if not (WEIGHTS / "multif0.h5").is_file():
        pytest.skip("DeepSalience weights not available")
    from stages.melody.config import MelodyConfig

    path, _ = song
    loader = ControlLoader(ReferenceConfigs(melody=MelodyConfig(weights_dir=str(WEIGHTS))), 50.0)
    controls = loader.song(path, ("drums", "melody"))
    assert set(controls) == {"drums", "melody"}
    stem, rate = controls["drums"]
    assert stem.ndim == 1 and rate == ReferenceConfigs().drums.sample_rate
    assert controls["melody"].shape[1] == 53 and controls["melody"].sum() > 0


def test_prompt_lines_with_controls_from(tmp_path, song):
    path, _ = song
    (tmp_path / "song.wav").write_bytes(path.read_bytes())
    lines = [
        {"id": "same_song_new_text", "description": "as a string quartet", "controls_from": "song.wav",
         "use": ["chords", "drums"]},
        {"id": "all", "controls_from": "song.wav"},
        {"id": "twice", "controls_from": "song.wav", "chords": [["C", 0.0]]},
        {"id": "bad_use", "controls_from": "song.wav", "use": ["bass"]},
        {"id": "use_alone", "use": ["chords"]},
        {"id": "missing", "controls_from": "nowhere.wav"},
    ]
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    prompts, rejects = read_prompts(prompts_file, 10.0)
    assert {p.id: p.use for p in prompts} == {"same_song_new_text": ("chords", "drums"),
                                              "all": ("chords", "drums", "melody")}
    reasons = [r["reason"] for r in rejects]
    assert any("given both directly and through controls_from" in r for r in reasons)
    assert any("use ['bass']" in r for r in reasons)
    assert any("'use' applies to 'controls_from'" in r for r in reasons)
    assert any("nowhere.wav not found" in r for r in reasons)
