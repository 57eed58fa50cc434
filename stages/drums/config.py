"""Parameters of the drums stage (``params.yaml`` section ``drums``), one frozen dataclass each."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pipeline.config import ConfigError, config_to_dict
from pipeline.constants import LATENT_FRAME_RATE
from stages.drums.constants import CODEC_SAMPLE_RATE


#: Demucs settings that say where and how the model runs, not what it computes; they are left out
#: of the params hash (the weights actually loaded are recorded per track instead).
EXECUTION_ONLY: frozenset[str] = frozenset({"weights_dir", "device", "batch_size", "cpu_batch_size"})


@dataclasses.dataclass(frozen=True)
class HpssConfig:
    """Harmonic-percussive separation (librosa) on the STFT of the input at the stem rate."""

    n_fft: int = 2048
    hop_length: int = 512
    #: Median filter lengths: across time (harmonic) and across frequency (percussive), in bins.
    harmonic_kernel: int = 31
    percussive_kernel: int = 17
    #: Soft-mask margins (>= 1); a percussive margin above 1 keeps only bins where the drums
    #: clearly dominate, trading stem energy for less harmonic leakage.
    harmonic_margin: float = 1.0
    percussive_margin: float = 2.0
    #: Exponent of the soft masks (librosa's ``power``).
    power: float = 2.0
    #: Transient emphasis: percussive frames are scaled by ``1 + emphasis * flux`` where flux is
    #: the frame's positive spectral flux normalised to [0, 1]; 0 disables it.
    transient_emphasis: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.n_fft < 16 or self.hop_length < 1 or self.hop_length > self.n_fft:
            problems.append(f"need 16 <= n_fft and 1 <= hop_length <= n_fft, got {self.n_fft}, {self.hop_length}")
        if self.harmonic_kernel < 1 or self.percussive_kernel < 1:
            problems.append("kernels must be >= 1")
        if self.harmonic_margin < 1.0 or self.percussive_margin < 1.0:
            problems.append("margins must be >= 1")
        if self.power <= 0 or self.transient_emphasis < 0:
            problems.append("power must be > 0 and transient_emphasis >= 0")
        if problems:
            raise ConfigError("drums.hpss: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class DemucsConfig:
    """A pretrained Demucs model applied in overlapping segments, batched."""

    #: Model or bag name (htdemucs, htdemucs_ft, mdx_extra, ...) or a single signature.
    model: str = "htdemucs"
    #: Folder of ``.th`` files (and bag ``.yaml`` files) searched before the torch hub cache.
    weights_dir: str | None = None
    #: Segment length in seconds; None uses the model's (HTDemucs cannot exceed its own).
    segment: float | None = None
    overlap: float = 0.25
    #: Transition weight exponent between overlapping segments (demucs' ``transition_power``).
    transition_power: float = 1.0
    #: Random-shift averaging passes (0 = none); offsets come from ``seed`` so runs repeat.
    shifts: int = 0
    seed: int = 0
    #: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: Segments per forward pass on a GPU (segments of several tracks share a pass).
    batch_size: int = 8
    #: Segments per forward pass on CPU: batching does not speed up a CPU and multiplies the
    #: memory of htdemucs' attention (measured 2x slower at 2 than at 1 on 2 cores).
    cpu_batch_size: int = 1

    def __post_init__(self) -> None:
        problems = []
        if not self.model:
            problems.append("model must be named")
        if self.segment is not None and self.segment <= 0:
            problems.append(f"segment must be > 0, got {self.segment}")
        if not 0.0 <= self.overlap < 1.0:
            problems.append(f"overlap must be in [0, 1), got {self.overlap}")
        if self.transition_power < 1.0:
            problems.append("transition_power must be >= 1")
        if self.shifts < 0 or self.batch_size < 1 or self.cpu_batch_size < 1:
            problems.append(f"need shifts >= 0 and batch sizes >= 1, got {self.shifts}, {self.batch_size}, "
                            f"{self.cpu_batch_size}")
        if problems:
            raise ConfigError("drums.demucs: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class OnsetConfig:
    """Onset-strength envelope (librosa spectral flux on a mel spectrogram) of the stem."""

    #: STFT window in seconds (2048 samples at 32 kHz); given in time so the envelope's timing
    #: does not depend on the stem sample rate.
    window_s: float = 0.064
    n_mels: int = 128
    #: Peak-picking threshold used when onsets are detected (evaluation, plots).
    delta: float = 0.07

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.n_mels < 1 or self.delta < 0:
            raise ConfigError(f"drums.onset: need window_s > 0, n_mels >= 1, delta >= 0, got {self}")

    def n_fft(self, sr: int) -> int:
        return max(16, int(round(self.window_s * sr)))


@dataclasses.dataclass(frozen=True)
class DrumsConfig:
    separator: Literal["hpss", "demucs"] = "hpss"
    #: Stem sample rate and channels: what the codec encodes (EnCodec 32 kHz mono in JASCO).
    sample_rate: int = CODEC_SAMPLE_RATE
    channels: int = 1
    #: Frame rate of the onset envelope (the latent frame rate).
    frame_rate: float = LATENT_FRAME_RATE
    hpss: HpssConfig = HpssConfig()
    demucs: DemucsConfig = DemucsConfig()
    onset: OnsetConfig = OnsetConfig()

    def __post_init__(self) -> None:
        if self.sample_rate < 1000 or self.channels not in (1, 2):
            raise ConfigError(f"drums: need sample_rate >= 1000 and channels 1 or 2, got {self.sample_rate}, {self.channels}")
        hop = self.sample_rate / self.frame_rate if self.frame_rate > 0 else 0.5
        if abs(hop - round(hop)) > 1e-9:
            # an integer hop keeps envelope frame k exactly at k / frame_rate seconds
            raise ConfigError(f"drums: sample_rate {self.sample_rate} must be a multiple of frame_rate {self.frame_rate}")

    def identity(self) -> dict[str, Any]:
        """The settings that decide the stage output: the shared ones plus the active separator's
        (so tuning Demucs does not invalidate HPSS shards, and vice versa)."""
        full = config_to_dict(self)
        inactive = {"hpss", "demucs"} - {self.separator}
        identity = {key: value for key, value in full.items() if key not in inactive}
        if "demucs" in identity:  # where the weights live and how they run do not change the model
            identity["demucs"] = {k: v for k, v in identity["demucs"].items() if k not in EXECUTION_ONLY}
        identity["onset"] = {k: v for k, v in identity["onset"].items() if k != "delta"}  # detection only
        return identity
