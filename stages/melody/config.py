"""Parameters of the melody stage (``params.yaml`` section ``melody``) and of its evaluation
(section ``melody_eval``, separate so that changing how we evaluate never invalidates features)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pipeline.config import ConfigError, config_to_dict
from pipeline.constants import LATENT_FRAME_RATE
from pipeline.stage import DEFAULT_NUMERIC_THREADS
from stages.melody.constants import (
    FRAME_RATE_RULES,
    HCQT_METHODS,
    PRECISIONS,
    JASCO_SALIENCE_THRESHOLD,
    MODEL_NAMES,
    SINGLE_F0_THRESHOLD,
    TIME_RECEPTIVE_RADIUS,
)


@dataclasses.dataclass(frozen=True)
class MelodyConfig:
    #: DeepSalience model whose salience makes the condition (JASCO used multif0).
    model: str = "multif0"
    #: ``torch`` (the port, faster here) or ``keras`` (the reference, TensorFlow).
    backend: Literal["torch", "keras"] = "torch"
    #: Folder with the ``<model>.h5`` files; null: $CHORDFLOW_DEEPSALIENCE_WEIGHTS, else
    #: ~/.cache/chordflow/deepsalience (`chordflow melody fetch-weights` fills it).
    weights_dir: str | None = None
    #: Threads the salience numerics (torch or TensorFlow, and BLAS) run with, in every worker and
    #: in the eval/generate code. In the params hash: another count may change the last float bits
    #: (DeepSalience at 1 vs 2 threads: up to 2.4e-7), the same count gives identical shards on every
    #: executor and machine. Must be explicit (>= 1): "all cores" would tie the output to the machine.
    threads: int = DEFAULT_NUMERIC_THREADS
    #: ``cpu`` or ``cuda[:n]`` (torch backend only).
    device: str = "cpu"
    #: Frames kept per model call (~11.6 s); peak memory ~0.6 MB per frame and window in flight.
    chunk_frames: int = 1000
    #: Windows per model call.
    batch_size: int = 1
    #: ``shared_octaves``: one CQT serves the harmonics 0.5, 1, 2 and 4 (3.4x less HCQT time, 99.8 %
    #: of frames the same melody index); ``per_harmonic``: the original's six CQTs.
    hcqt: Literal["shared_octaves", "per_harmonic"] = "shared_octaves"
    #: ``float32`` (the reference numerics) or ``bfloat16``: the 5x5 and 3x3 convolutions in
    #: bfloat16 (1.7x faster on CPUs with AVX-512 BF16 or AMX, slower on CPUs without them; GPUs),
    #: the 70-tall layer and the output in float32; 99.8 % of frames keep the float32 melody index
    #: (bench/report/melody_speed.md). torch backend only.
    precision: Literal["float32", "bfloat16"] = "float32"
    #: Extra frames each side of a window; at least the receptive radius (7) keeps chunked == whole.
    overlap_frames: int = TIME_RECEPTIVE_RADIUS
    #: Salience below this is zeroed before the 53-semitone grouping.
    threshold: float = JASCO_SALIENCE_THRESHOLD
    #: Frame rate of the stored condition (the latent frame rate).
    frame_rate: float = LATENT_FRAME_RATE
    #: How the 86.13 fps salience becomes ``frame_rate``: ``exact`` (from 22050 / 256 fps, no drift)
    #: or ``jasco86`` (JASCO's loader: rate rounded to 86, its length rule, zero padding; what the
    #: released models were trained on). See :mod:`stages.melody.jasco`.
    frame_rate_rule: Literal["exact", "jasco86"] = "exact"

    def __post_init__(self) -> None:
        problems = []
        if self.model not in MODEL_NAMES:
            problems.append(f"model {self.model!r} is not one of {', '.join(MODEL_NAMES)}")
        if self.backend == "keras" and self.device != "cpu":
            problems.append("the keras backend runs on the cpu; use backend torch for a GPU")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            problems.append(f"device {self.device!r} is not cpu or cuda[:n]")
        if self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads} (0, all cores, is no longer accepted: the "
                            "salience would depend on the machine's core count; give the count, e.g. SLURM's "
                            "cpus_per_task)")
        if self.hcqt not in HCQT_METHODS:
            problems.append(f"hcqt {self.hcqt!r} is not one of {', '.join(HCQT_METHODS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        elif self.precision != "float32" and self.backend != "torch":
            problems.append("precision bfloat16 needs backend torch")
        if self.chunk_frames < 1 or self.batch_size < 1:
            problems.append("chunk_frames and batch_size must be >= 1")
        if self.overlap_frames < TIME_RECEPTIVE_RADIUS:
            problems.append(f"overlap_frames {self.overlap_frames} < the receptive radius {TIME_RECEPTIVE_RADIUS}: "
                            "chunk edges would change the salience")
        if not 0.0 < self.threshold < 1.0 or self.frame_rate <= 0:
            problems.append("threshold must be in (0, 1) and frame_rate > 0")
        if self.frame_rate_rule not in FRAME_RATE_RULES:
            problems.append(f"frame_rate_rule {self.frame_rate_rule!r} is not one of {', '.join(FRAME_RATE_RULES)}")
        if problems:
            raise ConfigError(f"melody: {'; '.join(problems)}")

    def identity(self) -> dict[str, Any]:
        """The settings that decide the output, for the params hash: ``frame_rate_rule`` and
        ``precision`` only when they are not their defaults (added later; shards made before them
        keep their hash)."""
        values = config_to_dict(self)
        for key, default in (("frame_rate_rule", "exact"), ("precision", "float32")):
            if values[key] == default:
                del values[key]
        return values


@dataclasses.dataclass(frozen=True)
class MelodyEvalConfig:
    #: Models whose single-f0 output is scored against the corpus melody.
    models: tuple[str, ...] = ("melody1", "melody2")
    #: Frames whose peak salience is below this are unvoiced (the original `get_singlef0` default).
    voicing_threshold: float = SINGLE_F0_THRESHOLD
    #: Score at most this many clips (0 = all), taken in manifest order.
    limit: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown or not self.models:
            raise ConfigError(f"melody_eval: models {list(self.models)} must be a non-empty subset of {list(MODEL_NAMES)}")
        if not 0.0 < self.voicing_threshold < 1.0 or self.limit < 0:
            raise ConfigError("melody_eval: voicing_threshold must be in (0, 1) and limit >= 0")
