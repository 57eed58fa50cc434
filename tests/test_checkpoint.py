"""Checkpoint files: declared artifact + training state, weights-only loading, versions, old files."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from model.artifact import RunArtifact
from model.checkpoint import (CHECKPOINT_FORMAT, LEGACY_FORMAT, CheckpointError, load_artifact, load_checkpoint,
                              model_from_artifact, save_checkpoint)
from model.config import GenerateConfig, ModelParams, TrainConfig
from model.sampling.sample import MusicGenerator
from model.training.train import Trainer
from model_helpers import build_tiny_features, paths_for

TINY_MODEL = {"dim": 32, "layers": 2, "heads": 2, "frames_per_token": 2, "chord_embed_dim": 8, "melody_embed_dim": 8,
              "drum_embed_dim": 8}
TINY_TRAIN = {"steps": 4, "batch_size": 4, "segment_seconds": 1.0, "warmup_steps": 2, "checkpoint_every": 100,
              "eval_every": 2, "eval_batches": 1, "normalisation": "per_dim", "seed": 5}
#: Not GenerateConfig()'s defaults, so a run that forgot them would show.
RECOMMENDED = {"cfg_coef_all": 3.0, "cfg_coef_txt": -0.5, "guidance_interval": [0.0, 0.7], "steps": 3,
               "seconds": 1.0, "batch_size": 2}
INTERRUPT_AT = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_features(tmp_path_factory.mktemp("ckpt_features"))


@pytest.fixture(scope="module")
def cli_run(tiny, tmp_path_factory):
    """A run trained by ``chordflow train`` with a params file that has a ``generate`` section (a
    sampling-time choice: training ignores it, so the run records GenerateConfig()'s defaults)."""
    from chordflow.cli import main

    root = tmp_path_factory.mktemp("ckpt_run")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": TINY_TRAIN, "generate": RECOMMENDED}))
    out = root / "run"
    assert main(["train", *cli_args(tiny, out), "--params", str(params), "--no-progress"]) == 0
    return out / "checkpoint.pt", params


def cli_args(tiny, out: Path) -> list[str]:
    return ["--manifest", str(tiny.manifest), "--metadata", str(tiny.metadata), "--latents", str(tiny.latents),
            "--chords", str(tiny.chords), "--melody", str(tiny.melody), "--stats", str(tiny.stats), "--out", str(out)]


def test_the_file_is_plain_data_and_tensors_in_two_declared_parts(cli_run):
    checkpoint, _ = cli_run
    raw = torch.load(checkpoint, weights_only=True)  # no code: loads with the safe unpickler
    assert raw["format"] == CHECKPOINT_FORMAT and set(raw) == {"format", "artifact", "training"}
    assert set(raw["artifact"]) == {"model_config", "codec", "vocabulary", "stats", "normalisation", "text",
                                    "generate", "weights", "provenance"}
    assert set(raw["training"]) == {"model_params", "train_config", "world", "step", "segment_frames", "optimizer",
                                    "scheduler", "rng", "losses", "val_losses"}
    saved = load_checkpoint(checkpoint)
    assert saved.format == CHECKPOINT_FORMAT and saved.training.step == TINY_TRAIN["steps"]
    assert saved.training.model_params == ModelParams(**TINY_MODEL)
    assert saved.training.train_config == TrainConfig(**TINY_TRAIN)
    assert saved.artifact.generate == GenerateConfig()  # params `generate` never change what training writes
    assert len(saved.training.losses) == TINY_TRAIN["steps"] and len(saved.training.val_losses) == 2
    assert saved.artifact.vocabulary.build().mapping() == dict(saved.artifact.vocabulary.mapping)


def test_a_sampling_only_file_rebuilds_the_same_model(cli_run, tmp_path):
    checkpoint, _ = cli_run
    artifact = load_artifact(checkpoint)
    alone = save_checkpoint(tmp_path / "model.pt", artifact)  # no training state
    again = load_checkpoint(alone)
    assert again.training is None
    assert again.artifact.model_config == artifact.model_config and again.artifact.generate == artifact.generate
    for use_ema in (True, False):
        first, second = model_from_artifact(artifact, use_ema), model_from_artifact(again.artifact, use_ema)
        for key, value in first.state_dict().items():
            assert torch.equal(value, second.state_dict()[key]), key
    assert MusicGenerator.from_checkpoint(str(alone), device="cpu").params == artifact.generate


def test_the_api_and_the_cli_start_from_the_same_generation_settings(cli_run, tmp_path, monkeypatch):
    import model.sampling.generate as generate_module
    from chordflow.cli import main

    checkpoint, params = cli_run
    api = MusicGenerator.from_checkpoint(str(checkpoint), device="cpu").params
    assert api == load_artifact(checkpoint).generate == GenerateConfig()
    used = []
    monkeypatch.setattr(generate_module, "generate_batch_file",
                        lambda generator, *a, **k: used.append(generator.params) or {"clips": [], "rejects": []})
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "description": "organ"}\n')
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    base = ["generate", "--checkpoint", str(checkpoint), "--prompts", str(prompts), "--out", str(tmp_path / "o")]
    assert main([*base, "--params", str(empty), "--no-progress"]) == 0            # no generate section at all
    assert main([*base, "--params", str(params), "--no-progress"]) == 0           # a section that overrides
    assert main([*base, "--params", str(params), "--set", "steps=7", "--no-progress"]) == 0
    assert used[0] == api
    overridden = GenerateConfig(**{**RECOMMENDED, "guidance_interval": (0.0, 0.7)})
    assert used[1] == overridden and used[2] == dataclasses.replace(overridden, steps=7)


def _leave_marker(path: str) -> None:
    Path(path).write_text("the pickled callable ran")


class _CallsOnUnpickle:
    """Unpickling this calls ``_leave_marker(path)`` (a stand-in for os.system & co)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return _leave_marker, (str(self.path),)


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_unrun(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "artifact": _CallsOnUnpickle(marker), "training": None}, evil)
    with pytest.raises(CheckpointError, match=r"refused: the file carries code .*_leave_marker.*known version"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="refused"):
        MusicGenerator.from_checkpoint(str(evil), device="cpu")
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # what the refusal protects from: the plain unpickler runs it
    assert marker.read_text() == "the pickled callable ran"


def test_unknown_versions_and_damaged_files_are_clear_errors(cli_run, tmp_path):
    torch.save({"format": "chordflow.checkpoint/99"}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"'chordflow.checkpoint/99' is not one this chordflow reads "
                                              r"\(chordflow.checkpoint/2, chordflow.checkpoint/1, jasco.release\)"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"format": "someone.else/1", "state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a chordflow checkpoint of a known version"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "artifact": {"model_config": {}}, "training": None}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="malformed chordflow.checkpoint/2 file"):
        load_checkpoint(tmp_path / "bad.pt")
    checkpoint, _ = cli_run
    data = checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])  # e.g. a copy that ran out of disk
    assert not zipfile.is_zipfile(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "cut.pt")


def old_layout(trainer: Trainer) -> dict:
    """The flat ``chordflow.checkpoint/1`` dict, as the trainer before the artifact assembled it."""
    identity = {"model_params": dataclasses.asdict(trainer.model_params),
                "train_config": dataclasses.asdict(trainer.cfg), "model_config": trainer.model_config.to_dict(),
                "stats_frames": trainer.stats.frames, "world": trainer.world}
    vocabulary = trainer.vocabulary
    return {
        "format": LEGACY_FORMAT, "identity": identity, "model_config": trainer.model_config.to_dict(),
        "model_params": dataclasses.asdict(trainer.model_params), "train_config": dataclasses.asdict(trainer.cfg),
        "stats": dataclasses.asdict(trainer.stats), "normalisation": trainer.cfg.normalisation,
        "codec": {"name": trainer.codec.name, "options": dict(trainer.codec.options)},
        "vocabulary": {"mapping": vocabulary.mapping(), "name": vocabulary.name,
                       "slash_fallback": vocabulary.slash_fallback},
        "text": trainer.text_encoder.describe(), "step": trainer.step,
        "model": trainer.model.state_dict(), "ema": trainer.ema,
        "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "seed": trainer.cfg.seed},
        "data": {"position": trainer.step, "segment_frames": trainer.segment_frames, "rank_world": trainer.world},
        "losses": trainer.losses, "val_losses": trainer.val_rows,
    }


def test_an_old_format_checkpoint_still_loads_samples_and_resumes_to_the_same_trace(tiny, tmp_path):
    model, train = ModelParams(**TINY_MODEL), TrainConfig(**TINY_TRAIN)
    straight = Trainer(paths_for(tiny, tmp_path / "straight"), model, train)
    straight.run(progress=False)
    first = Trainer(paths_for(tiny, tmp_path / "old"), model, train)
    first.run(progress=False, stop_at=INTERRUPT_AT)
    old_file = tmp_path / "old" / "checkpoint.pt"
    torch.save(old_layout(first), old_file)  # replaces the new-format file the run wrote
    assert torch.load(old_file, weights_only=True)["format"] == LEGACY_FORMAT

    saved = load_checkpoint(old_file)
    assert saved.format == LEGACY_FORMAT and saved.training.step == INTERRUPT_AT
    assert isinstance(saved.artifact, RunArtifact) and saved.artifact.model_config == first.model_config
    # what the sampler used for such files: today's defaults, with one guidance weight for every control
    used_then = dataclasses.replace(GenerateConfig(), cfg_coef_drums_melody=None)
    assert saved.artifact.generate == used_then
    generator = MusicGenerator.from_checkpoint(str(old_file), device="cpu")
    assert generator.params == used_then and generator.sample_rate == 22050

    resumed = Trainer(paths_for(tiny, tmp_path / "old"), model, train)
    assert resumed.resumed_from and resumed.step == INTERRUPT_AT
    resumed.run(progress=False)
    assert resumed.losses == straight.losses and resumed.val_rows == straight.val_rows  # bit for bit
    assert load_checkpoint(old_file).format == CHECKPOINT_FORMAT  # rewritten in the new layout
