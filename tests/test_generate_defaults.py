"""One set of generation defaults: the Python API and ``chordflow generate`` give the same music."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from model.config import GenerateConfig
from model.sampling import sample as sample_module
from model.sampling.generate import loudness_normalise, write_wav
from model.sampling.sample import MusicGenerator
from model_helpers import build_tiny_features
from pipeline.config import load_section

REPO = Path(__file__).resolve().parents[1]

#: params.yaml's ``generate`` section before issue #14, i.e. what ``chordflow generate`` used then.
PRE_ISSUE_14_DEMO_SETTINGS = {"cfg_coef_all": 4.0, "cfg_coef_txt": -1.0, "guidance_interval": (0.0, 0.5),
                              "solver": "euler", "steps": 16, "seconds": 10.0, "window_seconds": 10.0,
                              "overlap_seconds": 2.0, "seed": 0, "batch_size": 8, "loudness_lufs": -16.0}
TINY_MODEL = {"dim": 32, "layers": 2, "heads": 2, "frames_per_token": 2, "chord_embed_dim": 8, "melody_embed_dim": 8,
              "drum_embed_dim": 8}
TINY_TRAIN = {"steps": 4, "batch_size": 4, "segment_seconds": 1.0, "warmup_steps": 2, "checkpoint_every": 100,
              "eval_every": 2, "eval_batches": 1, "normalisation": "per_dim", "seed": 5}
PROMPT = {"id": "p", "description": "calm organ", "chords": [["C", 0.0], ["G", 0.5]]}


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_the_defaults_are_the_recommended_settings_the_demo_used():
    demo = load_section(GenerateConfig, "generate", repo_params())  # the repo's params over the defaults
    assert demo == GenerateConfig(**PRE_ISSUE_14_DEMO_SETTINGS)     # the CLI's settings are unchanged
    assert GenerateConfig() == demo                                  # and the API's defaults are the same


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory):
    """A tiny run trained as ``dvc repro`` trains the demo: the repo's ``generate`` section recorded."""
    from chordflow.cli import main

    root = tmp_path_factory.mktemp("defaults")
    tiny = build_tiny_features(root / "features")
    params = root / "train.yaml"
    params.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": TINY_TRAIN,
                                      "generate": repo_params()["generate"]}))
    out = root / "run"
    paths = {"manifest": tiny.manifest, "metadata": tiny.metadata, "latents": tiny.latents, "chords": tiny.chords,
             "melody": tiny.melody, "stats": tiny.stats, "out": out}
    args = [item for name, path in paths.items() for item in (f"--{name}", str(path))]
    assert main(["train", *args, "--params", str(params), "--no-progress"]) == 0
    return out / "checkpoint.pt"


def test_the_api_without_arguments_and_the_cli_with_the_repo_params_give_the_same_audio(
        demo_checkpoint, tmp_path, monkeypatch):
    from chordflow.cli import main

    decoded = []  # the latents each path hands to the codec
    decode = MusicGenerator.decode
    monkeypatch.setattr(sample_module.MusicGenerator, "decode",
                        lambda self, latents: decoded.append(latents.clone()) or decode(self, latents))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(PROMPT) + "\n")
    out = tmp_path / "cli"
    assert main(["generate", "--checkpoint", str(demo_checkpoint), "--prompts", str(prompts), "--out", str(out),
                 "--params", str(REPO / "params.yaml"), "--no-progress"]) == 0

    api = MusicGenerator.from_checkpoint(str(demo_checkpoint))
    assert api.params == GenerateConfig()
    audio = api.generate_music([PROMPT["description"]], chords=[tuple(c) for c in PROMPT["chords"]])
    write_wav(tmp_path / "api.wav", loudness_normalise(audio[0], api.sample_rate, api.params.loudness_lufs),
              api.sample_rate)

    cli_latents, api_latents = decoded
    assert torch.equal(cli_latents, api_latents)
    assert (out / "clips" / "p.wav").read_bytes() == (tmp_path / "api.wav").read_bytes()
