"""The trainer: flow matching on cached features, resumable to the exact loss trace.

One step: a batch of crops (model/training/data.py), noise x0 and times t (U(0, 1) unless
``train.time_sampling`` says otherwise), a keep mask that drops conditions (per condition and all at
once), the velocity loss of the OT path, AdamW with warmup + cosine decay, gradient clipping, an EMA
of the weights. All randomness of step s is drawn from generators seeded by (seed, rank, s), so
resuming at step s replays exactly.
Checkpoints (a run artifact + the training state, model/checkpoint.py) go to ``OUT/checkpoint.pt``
every ``checkpoint_every`` steps and at the end;
``OUT/losses.tsv`` and ``OUT/val_losses.tsv`` are DVC plots, ``OUT/train.json`` the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from model.artifact import CodecSpec, Provenance, RunArtifact, TrainingState, VocabularySpec
from model.checkpoint import Checkpoint, CheckpointError, load_artifact, load_checkpoint, save_checkpoint
from model.network.conditioners import Conditions, keep_mask_from_flags, sample_keep_mask, sample_span_frames
from model.config import (GenerateConfig, ModelConfig, ModelParams, TrainConfig, model_config_from_params,
                          resolve_loss_weight)
from model.training.data import Batch, CropSampler, FeatureSource, Transposition, chord_transposition_table
from model.device import autocast_bfloat16, resolve_device
from model.training.metadata import load_track_metadata, tracks_of
from model.training.schedule import flow_times, lr_factor, optimizer_kernel, step_generator
from model.network.build import build_network
from model.flow.path import CondOTPath
from model.jasco.artifact import release_stats
from model.network.text import TextEncoder
from pipeline.atomic import atomic_write_text, remove_stale_temp_files
from pipeline.reader import StageStore
from stages.chords.stage import ChordsConfig
from stages.chords.vocab import Vocabulary
from stages.latents.config import LatentsConfig
from stages.latents.stats import NormalisationStats

if TYPE_CHECKING:
    from model.jasco.release import JascoRelease

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TrainPaths:
    """Where the trainer reads features and writes its outputs (all given by dvc.yaml)."""

    manifest: str
    latents: str
    chords: str
    melody: str
    stats: str
    out_dir: str
    metadata: str | None = None


def run_identity(model_params: ModelParams, cfg: TrainConfig, model_config: ModelConfig, stats_frames: int,
                 world: int) -> str:
    """What must match for a checkpoint in OUT to be resumed (else training starts afresh)."""
    return json.dumps({"model_params": dataclasses.asdict(model_params), "train_config": dataclasses.asdict(cfg),
                       "model_config": model_config.to_dict(), "stats_frames": stats_frames, "world": world},
                      sort_keys=True)


def _saved_identity(saved: Checkpoint) -> str:
    state = saved.training
    return run_identity(state.model_params, state.train_config, saved.artifact.model_config,
                        saved.artifact.stats.frames, state.world)


#: ``--continue-from`` prefix naming a released JASCO folder.
JASCO_PREFIX = "jasco:"
#: Codecs whose latents are EnCodec 32 kHz encoder outputs, as JASCO's (the release's own copy, or the hub model).
JASCO_LATENT_CODECS = ("jasco_encodec", "encodec_32khz")


def jasco_release(continue_from: str | None, codec: CodecSpec, cfg: TrainConfig) -> "JascoRelease | None":
    """The release named by ``jasco:FOLDER`` (None for anything else), checked against the data."""
    if not continue_from or not continue_from.startswith(JASCO_PREFIX):
        return None
    from model.jasco.release import read_release

    release = read_release(continue_from[len(JASCO_PREFIX):])
    if codec.name not in JASCO_LATENT_CODECS:
        raise CheckpointError(f"{release.source}: the latents were made with codec {codec.name!r}, but JASCO models "
                              f"are trained on EnCodec 32 kHz latents: run the latents stage with latents.codec: "
                              f"jasco_encodec (latents.jasco_encodec.checkpoint: the JASCO folder)")
    if cfg.normalisation != "global":
        raise CheckpointError(f"{release.source}: JASCO normalises latents with one global mean/std; "
                              f"set train.normalisation: global (not {cfg.normalisation!r})")
    return release


def chord_vocabulary(chords_dir: str | Path) -> Vocabulary:
    """The vocabulary the chords stage used (its params name it)."""
    chords = StageStore(chords_dir).config(ChordsConfig)
    return Vocabulary.load(chords.vocabulary, slash_fallback=chords.slash_fallback)


class Trainer:
    """Holds model, optimiser, data and text encoder of one training run.

    ``generate`` does not affect training; the checkpoint records it as the run's recommended
    generation settings, which the sampler starts from. ``chordflow train`` leaves it at
    :class:`GenerateConfig`'s defaults: params ``generate`` are sampling-time choices (applied by
    ``chordflow generate``), so changing them never retrains the model.
    """

    def __init__(self, paths: TrainPaths, model_params: ModelParams, cfg: TrainConfig,
                 continue_from: str | None = None, generate: GenerateConfig | None = None) -> None:
        self.paths, self.model_params, self.cfg = paths, model_params, cfg
        self.generate = generate if generate is not None else GenerateConfig()
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.device = resolve_device(cfg.device)
        if self.world > 1:
            self.device = self._init_distributed()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.bfloat16 = autocast_bfloat16(self.device, cfg.mixed_precision, cfg.mixed_precision_cpu)
        self.out_dir = Path(paths.out_dir)
        if self.rank == 0 and self.out_dir.is_dir():
            remove_stale_temp_files(self.out_dir)  # left by a run killed while writing a checkpoint
        latents_store = StageStore(paths.latents)
        self.codec = CodecSpec.of(latents_store.config(LatentsConfig))
        #: A released JASCO model to fine-tune (``--continue-from jasco:FOLDER``); its latent
        #: normalisation replaces the data's statistics, as the model was trained with it.
        self.release = jasco_release(continue_from, self.codec, cfg)
        self.stats = release_stats(self.release, self.codec.name) if self.release else NormalisationStats.load(paths.stats)
        self.vocabulary = chord_vocabulary(paths.chords)
        self.text_encoder = TextEncoder(model_params.text, device=self.device)
        metadata = load_track_metadata(paths.manifest, paths.metadata)
        descriptions = {tid: m.description for tid, m in metadata.items()}
        spec = {f.name: f for f in latents_store.info.features}
        self.model_config = model_config_from_params(
            model_params, latent_dim=spec["latents"].shape[-1], drum_dim=spec["drums_coarse"].shape[-1],
            text_dim=self.text_encoder.dim, frame_rate=latents_store.frame_rate, chord_vocab_size=len(self.vocabulary))
        folders = {"latents": paths.latents, "chords": paths.chords, "melody": paths.melody}
        make_source = lambda ids: FeatureSource(folders, ids, descriptions, self.stats, cfg.normalisation,
                                                self.model_config.melody_bins)
        self.train_source = make_source(tracks_of(metadata, "train"))
        valid_ids = tracks_of(metadata, "valid")
        self.valid_source = make_source(valid_ids) if valid_ids else None
        k = self.model_config.frames_per_token
        self.segment_frames = max(k, int(round(cfg.segment_seconds * self.model_config.frame_rate)) // k * k)
        self.sampler = CropSampler(self.train_source, segment_frames=self.segment_frames, batch_size=cfg.batch_size,
                                   seed=cfg.seed, rank=self.rank, world=self.world,
                                   shards_in_memory=cfg.shards_in_memory, steps_per_window=cfg.steps_per_window,
                                   transposition=self._transposition())

        torch.manual_seed(cfg.seed)  # same initial weights on every rank and every fresh run
        self.model = build_network(self.model_config).to(self.device)
        if hasattr(self.model, "temporal"):  # chordflow's network: chord pitch-class templates
            self.model.temporal.set_chord_labels(self.vocabulary.labels)
        self.path = CondOTPath(self.model_config.sigma_min)
        self.time_weighted_loss = resolve_loss_weight(cfg.loss_weight, self.model_config.architecture) == "one_plus_t"
        self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        #: (the ema dict they belong to, its float tensors, the model's matching tensors): see update_ema
        self._ema_pairs: tuple[dict[str, torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None = None
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay, **optimizer_kernel(self.device))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg))
        self.step = 0
        self.losses: list[float] = []
        self.val_rows: list[dict[str, float]] = []
        self.resumed_from: str | None = None
        self._restore(continue_from)
        self.train_model = self.model
        if self.world > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _transposition(self) -> Transposition | None:
        if self.cfg.transpose_semitones <= 0:
            return None
        codec = self.codec.build()
        codec.transpose(np.zeros((1, codec.dim), dtype=np.float32), 1)  # CodecError if it cannot
        return Transposition(codec=codec, chord_table=chord_transposition_table(self.vocabulary.labels, self.vocabulary),
                             max_semitones=self.cfg.transpose_semitones, probability=self.cfg.transpose_probability)

    def _init_distributed(self) -> torch.device:
        import torch.distributed as dist

        use_cuda = torch.cuda.is_available()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")

    # ----------------------------------------------------------------- checkpoints
    def _identity(self) -> str:
        return run_identity(self.model_params, self.cfg, self.model_config, self.stats.frames, self.world)

    def _restore(self, continue_from: str | None) -> None:
        own = self.out_dir / CHECKPOINT_NAME
        if own.is_file():
            saved = load_checkpoint(own, self.device)
            if saved.training is not None and _saved_identity(saved) == self._identity():
                self._resume(saved.artifact, saved.training)
                self.resumed_from = str(own)
                return
            tqdm.write(f"{own}: made with other params; training starts afresh (the old checkpoint is replaced)")
        if self.release is not None:
            self._start_from_release()
        elif continue_from:
            self._start_from_weights(continue_from)

    def _resume(self, artifact: RunArtifact, state: TrainingState) -> None:
        self.model.load_state_dict(artifact.model_weights)
        self.ema = {k: v.to(self.device) for k, v in artifact.weights(use_ema=True).items()}
        self.optimizer.load_state_dict(state.optimizer)
        for group in self.optimizer.param_groups:  # a saved group's flags replace ours: a checkpoint of the
            group.update(optimizer_kernel(self.device))  # per-tensor loop resumes on the fused kernel
        self.scheduler.load_state_dict(state.scheduler)
        torch.set_rng_state(state.torch_rng.cpu())  # loading maps it to the run's device; the CPU RNG needs it here
        self.step, self.losses, self.val_rows = state.step, state.losses, state.val_losses

    def _start_from_weights(self, path: str) -> None:
        """Fine-tuning: the (EMA) weights of another run's artifact, fresh optimisation."""
        artifact = load_artifact(path, self.device)
        if artifact.model_config != self.model_config:
            raise CheckpointError(f"{path}: model config differs from model params; cannot fine-tune")
        self.model.load_state_dict(artifact.weights(use_ema=True))
        self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _start_from_release(self) -> None:
        """Fine-tuning a released JASCO model: its weights, EMA from them, fresh optimisation (as AudioCraft)."""
        release = self.release
        differences = {f.name: (getattr(release.model_config, f.name), getattr(self.model_config, f.name))
                       for f in dataclasses.fields(ModelConfig)
                       if getattr(release.model_config, f.name) != getattr(self.model_config, f.name)}
        if differences:
            raise CheckpointError(
                f"{release.source}: the released model differs from this run's model (field: release, run): "
                f"{differences}; set model.preset: jasco with its dim/layers/heads, model.melody_embed_dim 0 for a "
                "chords-drums model, model.text: t5 (T5-base), chords.vocabulary: jasco")
        self.model.load_state_dict(release.weights)
        self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def artifact(self) -> RunArtifact:
        """What sampling this run's model needs (nothing of the optimisation)."""
        return RunArtifact(
            model_config=self.model_config, codec=self.codec, vocabulary=VocabularySpec.of(self.vocabulary),
            stats=self.stats, normalisation=self.cfg.normalisation, text=self.model_params.text,
            generate=self.generate, model_weights=self.model.state_dict(), ema_weights=self.ema,
            provenance=Provenance(steps=self.step, text_source=self.text_encoder.source,
                                  torch_version=str(torch.__version__)))  # TorchVersion is not plain data

    def training_state(self) -> TrainingState:
        """What resuming needs beyond the artifact."""
        return TrainingState(
            model_params=self.model_params, train_config=self.cfg, world=self.world, step=self.step,
            segment_frames=self.segment_frames, optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), torch_rng=torch.get_rng_state(), losses=self.losses,
            val_losses=self.val_rows)

    def save(self) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.out_dir / CHECKPOINT_NAME, self.artifact(), self.training_state())
        self.write_loss_files()

    def write_loss_files(self) -> None:
        """The DVC plots files, from the loss history (which the checkpoint also holds)."""
        rows = ["step\tloss"] + [f"{i}\t{loss:.6f}" for i, loss in enumerate(self.losses)]
        atomic_write_text(self.out_dir / "losses.tsv", "\n".join(rows) + "\n")
        keys = ["step", "all", "no_chords", "none"]
        val = ["\t".join(keys)] + ["\t".join(f"{row[k]:.6g}" for k in keys) for row in self.val_rows]
        atomic_write_text(self.out_dir / "val_losses.tsv", "\n".join(val) + "\n")

    # ----------------------------------------------------------------- steps
    def conditions(self, batch: Batch, keep: torch.Tensor, frames: torch.Tensor | None = None) -> Conditions:
        text, valid = self.text_encoder.encode(batch.descriptions)
        return Conditions(chords=batch.chords, drums=batch.drums, melody=batch.melody, text=text,
                          text_valid=valid, keep=keep, frames=frames).to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss_of(self, model: torch.nn.Module, batch: Batch, keep: torch.Tensor, generator: torch.Generator,
                frames: torch.Tensor | None = None) -> torch.Tensor:
        x1 = batch.x1.to(self.device)
        x0 = torch.randn(x1.shape, generator=generator).to(self.device)
        t = flow_times(x1.shape[0], generator, self.cfg.time_sampling).to(self.device)
        with self._autocast():
            predicted = model(self.path.sample(x0, x1, t), t, self.conditions(batch, keep, frames))
        return self.path.loss(predicted, x0, x1, t if self.time_weighted_loss else None)

    def train_step(self) -> float:
        batch = self.sampler.batch(self.step)
        generator = step_generator(self.cfg.seed, self.rank, self.step)
        d = self.model_params.dropout
        keep = sample_keep_mask(len(batch.track_ids), {"chords": d.chords, "drums": d.drums, "melody": d.melody,
                                                       "text": d.text}, d.all, generator,
                                {"text_chords": d.text_chords, "text_only": d.text_only})
        # drawn after the keep mask and only when used, so span 0 leaves every other draw as it was
        frames = sample_span_frames(len(batch.track_ids), batch.x1.shape[1], d.span, generator)
        self.model.train()
        loss = self.loss_of(self.train_model, batch, keep, generator, frames)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.update_ema()
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- ema + (1 - decay) (weights - ema) for every floating-point state-dict entry.

        One ``_foreach_lerp_`` over cached tensor lists: the same per-element lerp as a loop of
        ``lerp_`` (bit for bit), without a ``state_dict()`` walk and ~100 Python-level ops per step.
        The lists are rebuilt whenever ``self.ema`` is replaced (resume, fine-tuning)."""
        if self._ema_pairs is None or self._ema_pairs[0] is not self.ema:
            state = {k: v for k, v in self.model.state_dict().items() if v.dtype.is_floating_point}
            self._ema_pairs = (self.ema, [self.ema[k] for k in state], list(state.values()))
        _, averages, weights = self._ema_pairs
        torch._foreach_lerp_(averages, weights, 1 - self.cfg.ema_decay)

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Held-out loss with all conditions, with chords dropped, and with none (fixed crops and noise)."""
        if self.valid_source is None:
            return None
        sampler = CropSampler(self.valid_source, segment_frames=self.segment_frames, batch_size=self.cfg.batch_size,
                              seed=self.cfg.seed + 1)
        self.model.eval()
        totals = {"all": 0.0, "no_chords": 0.0, "none": 0.0}
        flags = {"all": dict(chords=True, drums=True, melody=True, text=True),
                 "no_chords": dict(chords=False, drums=True, melody=True, text=True), "none": {}}
        for i in range(self.cfg.eval_batches):
            batch = sampler.batch(i)
            for name, given in flags.items():
                keep = keep_mask_from_flags(len(batch.track_ids), **given)
                totals[name] += float(self.loss_of(self.model, batch, keep, step_generator(self.cfg.seed, 0, i, 99)))
        row = {"step": float(self.step), **{k: v / self.cfg.eval_batches for k, v in totals.items()}}
        self.val_rows.append(row)
        return row

    def run(self, progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
        """Train until ``cfg.steps`` (or ``stop_at``, for interruption tests); returns the summary."""
        end = min(self.cfg.steps, stop_at) if stop_at is not None else self.cfg.steps
        started, first_step = time.perf_counter(), self.step
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not progress or self.rank != 0)
        while self.step < end:
            loss = self.train_step()
            bar.update(1)
            if self.step % self.cfg.log_every == 0:
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                self.validate()
            if self.step % self.cfg.checkpoint_every == 0 or self.step == end:
                self.save()
        bar.close()
        if self.step == first_step and self.rank == 0:
            self.write_loss_files()  # a finished run resumed: its plots files come back from the checkpoint
        elapsed = time.perf_counter() - started
        steps_done = self.step - first_step
        summary = {
            "steps": self.step, "steps_this_run": steps_done, "seconds_this_run": round(elapsed, 2),
            "steps_per_second": round(steps_done / elapsed, 3) if elapsed > 0 and steps_done else None,
            "tokens_per_second": round(steps_done * self.cfg.batch_size * self.segment_frames
                                       / self.model_config.frames_per_token / elapsed, 1) if steps_done else None,
            "parameters": self.model.parameter_count(), "final_loss": self.losses[-1] if self.losses else None,
            "mean_loss_last_50": float(np.mean(self.losses[-50:])) if self.losses else None,
            "last_validation": self.val_rows[-1] if self.val_rows else None,
            "train_tracks": len(self.train_source.track_ids), "skipped_tracks": self.train_source.skipped,
            "resumed_from": self.resumed_from, "device": str(self.device), "world_size": self.world,
        }
        if self.rank == 0:
            atomic_write_text(self.out_dir / "train.json", json.dumps(summary, indent=1) + "\n")
        return summary
