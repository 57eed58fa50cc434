"""``logspec_griffinlim``: log-frequency magnitude latents at 50 fps, decoded by Griffin-Lim.

Why this codec: 80 Slaney mels (the usual vocoder format) are ~38 Hz apart below 1 kHz, too
coarse to tell a major third from a minor one, and a pretrained speech vocoder adds a buzz at
multiples of its frame rate; both halve Chordino's accuracy on resynthesised music. Here the bands follow the
STFT's own bins at low frequencies (every bin is kept until log spacing gets wider) and
``bins_per_octave`` log spacing above, so pitch classes stay separate from ~30 Hz upwards, and
the decoder (band interpolation back onto bins + Griffin-Lim) puts partials back where they were.
Weight-free and deterministic. Frame k is centred at ``k * hop`` samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from stages.latents.codec import Codec
from stages.latents.constants import LOG_FLOOR
from stages.latents.spectral import griffin_lim, pool_bands, stft_magnitude, triangular_filterbank


@dataclasses.dataclass(frozen=True)
class LogSpecConfig:
    """``latents.logspec_griffinlim`` in params.yaml."""

    sample_rate: int = 22050
    hop_length: int = 441  # 50 frames/s at 22.05 kHz: the project's latent frame rate
    n_fft: int = 2048  # 10.8 Hz bins (semitones apart above ~180 Hz; 4096 kept no more harmony, blurred onsets)
    fmin: float = 30.0
    fmax: float = 11025.0
    #: Log spacing above the point where it is wider than one STFT bin. 96 (413 bands at these settings)
    #: rather than 24 (150): the band smoothing, not Griffin-Lim's phase, is what an audio embedding
    #: hears (bench/report/realism_ceiling.md).
    bins_per_octave: int = 96
    griffin_lim_iters: int = 64
    griffin_lim_momentum: float = 0.99
    coarse_pool: int = 8  # channels averaged per coarse channel (drum condition)


def band_centres(config: LogSpecConfig) -> np.ndarray:
    """Centre frequencies (Hz): STFT-bin spacing where it is wider than the log spacing, log above."""
    bin_hz = config.sample_rate / config.n_fft
    ratio = 2.0 ** (1.0 / config.bins_per_octave)
    top = min(config.fmax, config.sample_rate / 2 - bin_hz)
    centres = [config.fmin]
    while True:
        following = max(centres[-1] * ratio, centres[-1] + bin_hz)
        if following > top:
            break
        centres.append(following)
    return np.asarray(centres, dtype=np.float64)


class LogSpecGriffinLim(Codec):
    name = "logspec_griffinlim"
    config_class = LogSpecConfig
    phase_preserving = False

    def __init__(self, config: LogSpecConfig) -> None:
        super().__init__(config)
        if config.n_fft < config.hop_length or not 0 < config.fmin < config.fmax:
            raise ValueError(f"{self.name}: need n_fft >= hop_length and 0 < fmin < fmax, got {config}")
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length
        self.centres_hz = band_centres(config)
        bank = triangular_filterbank(self.centres_hz, config.n_fft, config.sample_rate)
        # analysis: weighted mean over each triangle; synthesis: interpolation between centres
        self._analysis = torch.from_numpy((bank / bank.sum(axis=1, keepdims=True)).astype(np.float32))
        coverage = bank.sum(axis=0, keepdims=True)
        self._synthesis = torch.from_numpy(
            (bank / np.where(coverage > 0, coverage, 1.0)).T.astype(np.float32))  # (F, B)
        self.dim = len(self.centres_hz)
        self.coarse_dim = int(np.ceil(self.dim / config.coarse_pool))

    @property
    def context_samples(self) -> int:
        return self.config.n_fft // 2

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def encode(self, wav: np.ndarray) -> np.ndarray:
        wav = self._check_wav(wav)
        magnitude = stft_magnitude(wav, self.config.n_fft, self.hop_length)
        bands = self._analysis @ magnitude  # (B, T)
        return torch.log(torch.clamp(bands, min=LOG_FLOOR)).T.numpy().astype(np.float32)

    def magnitude(self, latents: np.ndarray) -> torch.Tensor:
        """(T, D) latents -> (n_fft//2+1, T) linear magnitude estimate (band interpolation)."""
        bands = torch.exp(torch.from_numpy(self._check_latents(latents)).T)
        return self._synthesis @ bands

    def decode(self, latents: np.ndarray) -> np.ndarray:
        magnitude = self.magnitude(latents)
        length = (magnitude.shape[1] - 1) * self.hop_length
        return griffin_lim(magnitude, self.config.n_fft, self.hop_length, self.config.griffin_lim_iters,
                           self.config.griffin_lim_momentum, length)

    def coarse(self, latents: np.ndarray) -> np.ndarray:
        return pool_bands(self._check_latents(latents), self.config.coarse_pool)

    def transpose(self, latents: np.ndarray, semitones: int) -> np.ndarray:
        """Move every band's log-magnitude to the band ``semitones`` away (linear interpolation on
        log-frequency between band centres; bands with no source take the silence floor)."""
        latents = self._check_latents(latents)
        if semitones == 0:
            return latents
        position = np.log2(self.centres_hz)
        source = position - semitones / 12.0  # where each band's new content comes from
        index = np.clip(np.searchsorted(position, source) - 1, 0, len(position) - 2)
        weight = np.clip((source - position[index]) / (position[index + 1] - position[index]), 0.0, 1.0)
        out = latents[:, index] * (1 - weight) + latents[:, index + 1] * weight
        outside = (source < position[0]) | (source > position[-1])
        out[:, outside] = np.float32(np.log(LOG_FLOOR))
        return out.astype(np.float32)
