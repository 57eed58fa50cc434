"""Trainer: exact resume, checkpoint round trip, fine-tuning, CLI, DDP, SLURM job."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, model_from_artifact
from model.config import ArchitectureConfig, ModelConfig, ModelParams, TrainConfig, model_config_from_params
from model.sampling.sample import MusicGenerator
from model.training.schedule import flow_times, lr_factor
from model.training.train import Trainer
from model_helpers import build_tiny_features, paths_for

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = ModelParams(dim=32, layers=2, heads=2, frames_per_token=2, chord_embed_dim=8, melody_embed_dim=8,
                         drum_embed_dim=8)
TINY_TRAIN = TrainConfig(steps=8, batch_size=4, segment_seconds=1.0, warmup_steps=2, checkpoint_every=100,
                         eval_every=4, eval_batches=1, log_every=1, normalisation="per_dim", seed=3,
                         transpose_semitones=3, transpose_probability=0.5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_features(tmp_path_factory.mktemp("tiny_features"))


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)


def test_flow_times_uniform_keeps_the_rand_stream_and_logit_normal_favours_the_middle():
    uniform = flow_times(20000, torch.Generator().manual_seed(3), "uniform")
    assert torch.equal(uniform, torch.rand(20000, generator=torch.Generator().manual_seed(3)))
    logit = flow_times(20000, torch.Generator().manual_seed(3), "logit_normal")
    assert float(logit.min()) > 0.0 and float(logit.max()) < 1.0
    assert abs(float(logit.median()) - 0.5) < 0.01
    middle = lambda t: float(((t > 0.25) & (t < 0.75)).float().mean())  # noqa: E731
    assert middle(logit) > 0.65 and abs(middle(uniform) - 0.5) < 0.02  # P(|z| < logit(0.75)) = 0.727
    with pytest.raises(ValueError, match="time_sampling"):
        TrainConfig(time_sampling="beta")


def test_exact_resume_gives_the_same_loss_trace(tiny, tmp_path):
    straight = Trainer(paths_for(tiny, tmp_path / "straight"), TINY_MODEL, TINY_TRAIN)
    straight.run(progress=False)
    first = Trainer(paths_for(tiny, tmp_path / "resumed"), TINY_MODEL, TINY_TRAIN)
    first.run(progress=False, stop_at=4)
    assert len(first.losses) == 4
    resumed = Trainer(paths_for(tiny, tmp_path / "resumed"), TINY_MODEL, TINY_TRAIN)
    assert resumed.step == 4 and resumed.resumed_from
    summary = resumed.run(progress=False)
    assert summary["steps_this_run"] == 4
    assert resumed.losses == straight.losses  # bit for bit
    assert len(resumed.val_rows) == len(straight.val_rows) == 2
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in straight.ema.items():
        assert torch.equal(value, resumed.ema[key]), key


def test_a_finished_run_resumed_writes_its_lost_plots_files_again(tiny, tmp_path):
    Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN).run(progress=False)
    files = {name: (tmp_path / name).read_text() for name in ("losses.tsv", "val_losses.tsv")}
    for name in files:
        (tmp_path / name).unlink()  # e.g. removed by an interrupted `dvc repro`
    again = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN)
    assert again.run(progress=False)["steps_this_run"] == 0
    assert {name: (tmp_path / name).read_text() for name in files} == files


def test_changed_params_start_afresh(tiny, tmp_path):
    Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN).run(progress=False, stop_at=2)
    other = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TrainConfig(**{**TINY_TRAIN.__dict__, "learning_rate": 1e-4}))
    assert other.step == 0 and other.resumed_from is None


def test_checkpoint_rebuilds_the_model_from_the_file_alone(tiny, tmp_path):
    trainer = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN)
    trainer.run(progress=False)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved.artifact.model_config == trainer.model_config and saved.artifact.stats == trainer.stats
    assert saved.training.step == saved.artifact.provenance.steps == TINY_TRAIN.steps
    assert saved.training.losses == trainer.losses and saved.training.segment_frames == trainer.segment_frames
    rebuilt = model_from_artifact(saved.artifact, use_ema=False)
    batch = trainer.sampler.batch(0)
    from model.network.conditioners import keep_mask_from_flags
    cond = trainer.conditions(batch, keep_mask_from_flags(len(batch.track_ids), chords=True, text=True))
    t = torch.full((len(batch.track_ids),), 0.4)
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(batch.x1, t, cond), trainer.model(batch.x1, t, cond))
    generator = MusicGenerator.from_checkpoint(str(tmp_path / "checkpoint.pt"), device="cpu")
    assert generator.sample_rate == 22050 and generator.vocabulary.encode("Am") == trainer.vocabulary.encode("Am")


def test_bad_checkpoint_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a chordflow"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_continue_from_fine_tunes_from_the_weights(tiny, tmp_path):
    Trainer(paths_for(tiny, tmp_path / "base"), TINY_MODEL, TINY_TRAIN).run(progress=False)
    base = load_checkpoint(tmp_path / "base" / "checkpoint.pt").artifact
    tune = Trainer(paths_for(tiny, tmp_path / "tune"), TINY_MODEL, TINY_TRAIN,
                   continue_from=str(tmp_path / "base" / "checkpoint.pt"))
    assert tune.step == 0
    for key, value in base.ema_weights.items():
        assert torch.equal(tune.model.state_dict()[key], value), key
    bigger = ModelParams(**{**TINY_MODEL.__dict__, "dim": 64})
    with pytest.raises(CheckpointError, match="model config differs"):
        Trainer(paths_for(tiny, tmp_path / "tune2"), bigger, TINY_TRAIN,
                continue_from=str(tmp_path / "base" / "checkpoint.pt"))


def test_training_lowers_the_loss(tiny, tmp_path):
    cfg = TrainConfig(**{**TINY_TRAIN.__dict__, "steps": 100, "batch_size": 8, "eval_every": 0, "learning_rate": 3e-3})
    trainer = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, cfg)
    trainer.run(progress=False)
    assert np.mean(trainer.losses[-10:]) < 0.85 * np.mean(trainer.losses[:10])


def _cli_args(tiny, out: Path) -> list[str]:
    return ["--manifest", str(tiny.manifest), "--metadata", str(tiny.metadata), "--latents", str(tiny.latents),
            "--chords", str(tiny.chords), "--melody", str(tiny.melody), "--stats", str(tiny.stats), "--out", str(out)]


def _tiny_params(tmp_path: Path, **train) -> Path:
    import yaml

    model = {k: v for k, v in TINY_MODEL.__dict__.items() if k not in ("dropout", "text") and v is not None}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"model": model, "train": {**{k: (list(v) if isinstance(v, tuple) else v)
                                                                    for k, v in TINY_TRAIN.__dict__.items()}, **train}}))
    return params


def test_cli_train_interrupted_and_resumed_then_plot(tiny, tmp_path):
    from chordflow.cli import main

    params = _tiny_params(tmp_path)
    out = tmp_path / "run"
    assert main(["train", *_cli_args(tiny, out), "--params", str(params), "--no-progress", "--stop-at", "4"]) == 0
    assert main(["train", *_cli_args(tiny, out), "--params", str(params), "--no-progress"]) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["steps"] == 8 and summary["steps_this_run"] == 4 and summary["resumed_from"]
    assert len((out / "losses.tsv").read_text().splitlines()) == 1 + 8
    assert main(["train-plot", "--run", str(out), "--out", str(tmp_path / "loss.png")]) == 0
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_ddp_two_processes_on_cpu(tiny, tmp_path):
    params = _tiny_params(tmp_path, steps=3, eval_every=0)
    out = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29517", "-m", "chordflow", "train", *_cli_args(tiny, out), "--params", str(params),
                           "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert load_checkpoint(out / "checkpoint.pt").training.world == 2


def test_training_runs_as_a_slurm_job(tiny, tmp_path, slurm_cluster):
    import yaml

    params = _tiny_params(tmp_path, steps=4, eval_every=0)
    data = yaml.safe_load(params.read_text())
    data["executor"] = {"backend": "slurm", "slurm": {"folder": str(tmp_path / "slurm"), "time_min": 5,
                                                      "mem_gb": 2.0}}
    params.write_text(yaml.safe_dump(data))
    out = tmp_path / "slurm_run"
    proc = subprocess.run([sys.executable, "-m", "chordflow", "train", *_cli_args(tiny, out), "--params",
                           str(params), "--executor", "slurm", "--no-progress"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted SLURM job" in proc.stderr
    assert json.loads((out / "train.json").read_text())["steps"] == 4


def test_model_params_and_model_config_share_one_set_of_defaults():
    shared = [f.name for f in dataclasses.fields(ArchitectureConfig)]
    assert len(shared) == 9
    config = ModelConfig(latent_dim=1, drum_dim=1, text_dim=1)
    assert all(getattr(config, name) == getattr(ModelParams(), name) for name in shared)
    changed = ModelParams(**{name: getattr(TINY_MODEL, name) for name in ("dim", "layers", "heads")},
                          mlp_ratio=2.0, frames_per_token=4, chord_embed_dim=5, melody_embed_dim=6, drum_embed_dim=7,
                          drum_pool_frames=1, condition_every_layer=True, sigma_min=1e-3)
    built = model_config_from_params(changed, latent_dim=1, drum_dim=1, text_dim=1, frame_rate=50.0,
                                     chord_vocab_size=10)
    assert all(getattr(built, name) == getattr(changed, name) for name in shared)  # every shared field passes


def test_shard_windows_split_by_rank_and_cycle_through_every_shard():
    from types import SimpleNamespace

    from model.training.data import CropSampler

    source = SimpleNamespace(shards=[[f"t{i}"] for i in range(10)])
    ranks = [CropSampler(source, segment_frames=10, batch_size=2, seed=5, rank=r, world=2, shards_in_memory=2,
                         steps_per_window=100) for r in range(2)]
    assert set(ranks[0].my_shards).isdisjoint(ranks[1].my_shards)
    assert sorted(ranks[0].my_shards + ranks[1].my_shards) == list(range(10))
    for sampler in ranks:
        windows = [sampler.window_shards(step) for step in range(0, 300, 100)]
        assert all(len(w) == 2 for w in windows) and windows[0] == sampler.window_shards(99)
        assert set().union(*windows) == set(sampler.my_shards)  # 5 shards, windows of 2: all seen in 3 windows
    again = CropSampler(source, segment_frames=10, batch_size=2, seed=5, rank=0, world=2, shards_in_memory=2,
                        steps_per_window=100)
    assert [again.window_shards(s) for s in (0, 150, 250)] == [ranks[0].window_shards(s) for s in (0, 150, 250)]


def test_transposition_moves_latents_chords_and_melody_together(tiny, tmp_path):
    from model.training.data import Transposition, chord_transposition_table
    from stages.chords.vocab import Vocabulary
    from stages.latents.codecs import make_codec
    from model_helpers import TINY_CODEC

    vocabulary = Vocabulary.jasco()
    codec = make_codec("logspec_griffinlim", TINY_CODEC)
    shift = Transposition(codec, chord_transposition_table(vocabulary.labels, vocabulary), 5, 1.0)
    latents = np.random.default_rng(0).standard_normal((4, codec.dim)).astype(np.float32)
    chords = np.array([vocabulary.encode(c) for c in ("C", "Am7", "N", "G/B")])
    melody = np.zeros((4, 53), dtype=np.float32)
    melody[np.arange(4), [0, 10, 50, 52]] = 1
    moved_latents, moved_chords, moved_melody = shift.apply(latents, chords, melody, 2)
    assert [vocabulary.decode(int(c)) for c in moved_chords] == ["D", "Bm7", "N", "A/C#"]
    assert moved_melody.argmax(1).tolist()[:3] == [2, 12, 52] and moved_melody[3].sum() == 0  # off the top
    assert np.array_equal(moved_latents, codec.transpose(latents, 2))
    rng = np.random.default_rng(1)
    picks = [shift.pick(rng) for _ in range(200)]
    assert 0 not in picks and max(picks) == 5 and min(picks) == -5
    trainer = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN)
    descriptions = [d for step in range(6) for d in trainer.sampler.batch(step).descriptions]
    # every tiny track has a description; a transposed crop leaves its (now wrong-key) text out
    assert 0 < sum(d is None for d in descriptions) < len(descriptions)
