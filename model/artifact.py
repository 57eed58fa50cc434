"""What a checkpoint declares: the run artifact (to sample) and the training state (to resume).

``RunArtifact`` rebuilds and samples a model from the file alone: model config, the codec that made
the latents, the chord vocabulary, the latent normalisation, the text encoder, the recommended
generation settings (the ``generate`` params the run was trained with), the weights (EMA and
plain) and a little provenance. ``TrainingState`` is what only resuming needs: the params the run
was trained with, optimizer, scheduler, RNG, the step (= data position, see model/training/data.py) and the
loss history; resuming takes its weights from the artifact.

Both convert to and from plain types and tensors only (``to_payload`` / ``from_payload``), so a
checkpoint loads with ``torch.load(weights_only=True)``. model/checkpoint.py writes and reads the
file; a malformed payload raises ``KeyError``, ``TypeError`` or :class:`ConfigError`, which the
reader turns into a message naming the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import torch

from model.config import GenerateConfig, ModelConfig, ModelParams, TextConfig, TrainConfig
from pipeline.config import config_to_dict, load_config
from stages.chords.vocab import Vocabulary
from stages.latents.stats import NormalisationStats

if TYPE_CHECKING:
    from stages.latents.codec import Codec
    from stages.latents.config import LatentsConfig

Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CodecSpec:
    """The latents stage's codec: its name and options (as that stage's params give them)."""

    name: str
    options: Mapping[str, Any]

    @classmethod
    def of(cls, latents: "LatentsConfig") -> "CodecSpec":
        """The codec a latents stage config names, its options as plain data (as the shards record them)."""
        options = latents.codec_options()
        return cls(name=latents.codec, options=config_to_dict(options) if options is not None else {})

    def build(self) -> "Codec":
        from stages.latents.codecs import make_codec  # heavy (audio backends): only when asked

        return make_codec(self.name, dict(self.options))


@dataclass(frozen=True)
class VocabularySpec:
    """A chord vocabulary as data: label -> index, its name and the slash-chord fallback."""

    name: str
    slash_fallback: bool
    mapping: Mapping[str, int]

    @classmethod
    def of(cls, vocabulary: Vocabulary) -> "VocabularySpec":
        return cls(name=vocabulary.name, slash_fallback=vocabulary.slash_fallback, mapping=vocabulary.mapping())

    def build(self) -> Vocabulary:
        return Vocabulary(dict(self.mapping), name=self.name, slash_fallback=self.slash_fallback)


@dataclass(frozen=True)
class Provenance:
    """Where the weights come from (for people reading the file; nothing depends on it)."""

    steps: int
    #: The folder or hub id the text encoder was loaded from when training.
    text_source: str | None = None
    torch_version: str | None = None


def recorded_settings(generate: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's recorded generation settings as the code that trained it meant them: a file from
    before drums and melody had their own guidance weight guided every temporal control by one."""
    return {"cfg_coef_drums_melody": None, **generate}


@dataclass(frozen=True, eq=False)  # eq=False: weights are tensors, field-wise == is meaningless
class RunArtifact:
    """Everything sampling needs, and nothing else."""

    model_config: ModelConfig
    codec: CodecSpec
    vocabulary: VocabularySpec
    stats: NormalisationStats
    normalisation: str
    text: TextConfig
    generate: GenerateConfig
    model_weights: Weights
    ema_weights: Weights | None
    provenance: Provenance

    def weights(self, use_ema: bool = True) -> Weights:
        """The EMA weights when asked for and present, else the plain ones."""
        return self.ema_weights if use_ema and self.ema_weights is not None else self.model_weights

    def to_payload(self) -> dict[str, Any]:
        return {
            "model_config": self.model_config.to_dict(), "codec": dataclasses.asdict(self.codec),
            "vocabulary": dataclasses.asdict(self.vocabulary), "stats": dataclasses.asdict(self.stats),
            "normalisation": self.normalisation, "text": dataclasses.asdict(self.text),
            "generate": dataclasses.asdict(self.generate),
            "weights": {"model": self.model_weights, "ema": self.ema_weights},
            "provenance": dataclasses.asdict(self.provenance),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "RunArtifact":
        where = "checkpoint artifact"
        return cls(
            model_config=ModelConfig.from_dict(payload["model_config"]),
            codec=load_config(CodecSpec, payload["codec"], where=f"{where}.codec"),
            vocabulary=load_config(VocabularySpec, payload["vocabulary"], where=f"{where}.vocabulary"),
            stats=load_config(NormalisationStats, payload["stats"], where=f"{where}.stats"),
            normalisation=str(payload["normalisation"]),
            text=load_config(TextConfig, payload["text"], where=f"{where}.text"),
            generate=load_config(GenerateConfig, recorded_settings(payload["generate"]), where=f"{where}.generate"),
            model_weights=_weights(payload["weights"]["model"], "model"),
            ema_weights=_weights(payload["weights"]["ema"], "ema") if payload["weights"]["ema"] is not None else None,
            provenance=load_config(Provenance, payload["provenance"], where=f"{where}.provenance"),
        )


@dataclass(frozen=True, eq=False)
class TrainingState:
    """What resuming needs beyond the artifact (whose weights it continues from)."""

    model_params: ModelParams
    train_config: TrainConfig
    #: Ranks the run trained on; the crop sampler's data split depends on it.
    world: int
    #: Steps done; also the data position (the batch of step s depends only on seed, rank and s).
    step: int
    segment_frames: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    torch_rng: torch.Tensor
    losses: list[float]
    val_losses: list[dict[str, float]]

    def to_payload(self) -> dict[str, Any]:
        return {
            "model_params": dataclasses.asdict(self.model_params),
            "train_config": dataclasses.asdict(self.train_config),
            "world": self.world, "step": self.step, "segment_frames": self.segment_frames,
            "optimizer": self.optimizer, "scheduler": self.scheduler, "rng": {"torch": self.torch_rng},
            "losses": self.losses, "val_losses": self.val_losses,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "TrainingState":
        where = "checkpoint training"
        return cls(
            model_params=load_config(ModelParams, payload["model_params"], where=f"{where}.model_params"),
            train_config=load_config(TrainConfig, payload["train_config"], where=f"{where}.train_config"),
            world=int(payload["world"]), step=int(payload["step"]), segment_frames=int(payload["segment_frames"]),
            optimizer=dict(payload["optimizer"]), scheduler=dict(payload["scheduler"]),
            torch_rng=payload["rng"]["torch"], losses=list(payload["losses"]),
            val_losses=[dict(row) for row in payload["val_losses"]],
        )


def _weights(values: Any, what: str) -> Weights:
    if not isinstance(values, Mapping) or not all(isinstance(v, torch.Tensor) for v in values.values()):
        raise TypeError(f"{what} weights: expected a mapping of names to tensors")
    return dict(values)
