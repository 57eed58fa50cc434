"""The offline default separator: the percussive part of harmonic-percussive separation.

Median filtering the magnitude spectrogram across time keeps sustained (harmonic) partials and
across frequency keeps broadband (percussive) clicks; soft masks built from the two split the
STFT (Fitzgerald 2010, with the margins of Driedger et al. 2014). It needs no weights, which makes
it the default here, but it is not a drum separator: sharp note attacks leak into the stem and
tonal drums (toms, kick tails) partly go to the harmonic side.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pipeline.numba_cache import import_librosa
from stages.drums.config import HpssConfig

librosa = import_librosa()


def positive_flux(magnitude: np.ndarray) -> np.ndarray:
    """Positive spectral flux per frame of a (F, T) magnitude, normalised to [0, 1] -> (T,).

    The frame before the first counts as silence, so a hit at the very start is a transient too.
    """
    previous = np.concatenate([np.zeros_like(magnitude[:, :1]), magnitude[:, :-1]], axis=1)
    flux = np.maximum(magnitude - previous, 0.0).sum(axis=0)
    peak = float(flux.max()) if flux.size else 0.0
    return flux / peak if peak > 0 else flux


class HpssSeparator:
    """Percussive part of librosa's HPSS, per channel, at the stem rate."""

    name = "hpss"

    def __init__(self, config: HpssConfig, sample_rate: int, channels: int) -> None:
        self.config = config
        self._sample_rate = sample_rate
        self._channels = channels

    @property
    def label(self) -> str:
        return self.name

    @property
    def input_sample_rate(self) -> int | None:
        return self._sample_rate

    @property
    def input_channels(self) -> int | None:
        return self._channels

    def setup(self) -> None:
        """Nothing to load."""

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"separator": self.name, "library": f"librosa {librosa.__version__}", "n_fft": c.n_fft,
                "hop_length": c.hop_length, "kernel_size": [c.harmonic_kernel, c.percussive_kernel],
                "margin": [c.harmonic_margin, c.percussive_margin], "power": c.power,
                "transient_emphasis": c.transient_emphasis}

    def separate(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """Percussive part of each channel of ``samples`` (C, N) -> (C, N) float32."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2:
            raise ValueError(f"expected (channels, samples), got shape {samples.shape}")
        if samples.shape[1] == 0:
            return samples.copy()
        return np.stack([self._percussive(channel) for channel in samples]).astype(np.float32)

    def _percussive(self, signal: np.ndarray) -> np.ndarray:
        c = self.config
        with warnings.catch_warnings():  # a clip shorter than n_fft: librosa warns, zero-padding is fine
            warnings.simplefilter("ignore", UserWarning)
            spectrum = librosa.stft(signal, n_fft=c.n_fft, hop_length=c.hop_length)
        _, percussive = librosa.decompose.hpss(
            spectrum, kernel_size=(c.harmonic_kernel, c.percussive_kernel),
            margin=(c.harmonic_margin, c.percussive_margin), power=c.power,
        )
        if c.transient_emphasis > 0:
            # lift the attack frames over the decays and over what leaked in from sustained notes
            percussive = percussive * (1.0 + c.transient_emphasis * positive_flux(np.abs(percussive)))[None, :]
        return librosa.istft(percussive, n_fft=c.n_fft, hop_length=c.hop_length, length=signal.shape[0])
