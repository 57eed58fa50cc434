"""Parameters of the demo corpus (``params.yaml`` section ``corpus``) and its fixed conventions."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipeline.config import ConfigError, config_hash
from pipeline.constants import CORPUS_RENDER_SAMPLE_RATE

#: Bump when a code change alters rendered clips for the same parameters (invalidates old clips).
CORPUS_VERSION: str = "1"
#: Frame rate of the per-frame melody f0 in the truth sidecar (10 ms hop).
MELODY_FRAME_RATE: float = 100.0
#: Debian package that provides the default SoundFont, named in the error when it is missing.
SOUNDFONT_PACKAGE: str = "fluid-soundfont-gm"
DEFAULT_SOUNDFONT: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
#: Mixed-format slice: clip k of the slice uses SLICE_FORMATS[k % 3], SLICE_CHANNELS[k % 2] and
#: SLICE_SAMPLE_RATES[k % 4], so every format, channel count and rate appears within 12 clips.
SLICE_FORMATS: tuple[str, ...] = ("flac", "mp3", "ogg")
SLICE_CHANNELS: tuple[int, ...] = (2, 1)
SLICE_SAMPLE_RATES: tuple[int, ...] = (22050, 32000, 48000, 44100)
SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class SourceMix:
    """Relative share of each source kind (normalised, need not sum to 1)."""

    grammar: float = 0.6
    chorale: float = 0.25
    folk: float = 0.15

    def as_dict(self) -> dict[str, float]:
        return {"grammar": self.grammar, "chorale": self.chorale, "folk": self.folk}


@dataclasses.dataclass(frozen=True)
class SplitFractions:
    """Share of clips suggested for each split; assigned in shuffled blocks so counts stay close."""

    train: float = 0.6
    valid: float = 0.15
    test: float = 0.25


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """How the demo corpus is generated and rendered.

    ``n`` and ``workers`` only decide how much is rendered and how fast; every other field is part
    of each clip's parameter hash, so changing it re-renders the clips it affects.
    """

    n: int = 64
    seed: int = 0
    sample_rate: int = CORPUS_RENDER_SAMPLE_RATE
    clip_seconds: tuple[float, float] = (10.0, 15.0)
    source_mix: SourceMix = SourceMix()
    drum_probability: float = 0.85  # grammar and folk clips; chorales get half of it
    soundfont: str = DEFAULT_SOUNDFONT
    fluidsynth: str = "fluidsynth"
    synth_gain: float = 0.5  # FluidSynth master gain; the output is normalised afterwards anyway
    target_rms_dbfs: float = -18.0
    peak_dbfs: float = -1.0  # normalisation never lets the peak exceed this
    fade_out_seconds: float = 0.05
    audio_format: Literal["wav", "flac"] = "wav"
    stem_format: Literal["wav", "flac"] = "flac"
    format_slice_every: int = 4  # every k-th clip goes to the mixed-format slice; 0 disables it
    split_fractions: SplitFractions = SplitFractions()
    workers: int = 2

    def __post_init__(self) -> None:
        lo, hi = self.clip_seconds if len(self.clip_seconds) == 2 else (0.0, -1.0)
        problems = []
        if self.n < 0 or self.seed < 0:
            problems.append(f"n and seed must be >= 0, got n={self.n}, seed={self.seed}")
        if not 0 < lo <= hi:
            problems.append(f"clip_seconds must be [min, max] with 0 < min <= max, got {list(self.clip_seconds)}")
        if min(self.source_mix.as_dict().values()) < 0 or sum(self.source_mix.as_dict().values()) <= 0:
            problems.append("source_mix shares must be >= 0 and not all 0")
        fractions = dataclasses.astuple(self.split_fractions)
        if min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            problems.append(f"split_fractions must be >= 0 and sum to 1, got {fractions}")
        if not 0 <= self.drum_probability <= 1:
            problems.append("drum_probability must be in [0, 1]")
        if self.sample_rate <= 0 or self.workers < 1 or self.format_slice_every < 0:
            problems.append("sample_rate > 0, workers >= 1 and format_slice_every >= 0 are required")
        if self.peak_dbfs > 0:
            problems.append("peak_dbfs must be <= 0 (no clipping)")
        if problems:
            raise ConfigError("corpus: " + "; ".join(problems))


def clip_params_hash(config: CorpusConfig, index: int) -> str:
    """Hash of everything that decides clip ``index`` (not ``n`` or ``workers``)."""
    invariant = dataclasses.replace(config, n=0, workers=1)
    return config_hash(invariant, {"clip_index": index, "corpus_version": CORPUS_VERSION})
