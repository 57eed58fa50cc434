"""Harmonic clarity: how much of a clip's energy sits in stable, prominent partials.

Real music through a good codec has sharp partials that hold for a while (a note, a chord); a
smeared generation has energy everywhere and peaks that come and go. The statistic:

1. mono audio at ``sample_rate``, a Hann STFT of ``n_fft`` (fine frequency resolution) and ``hop``;
2. in each frame, within ``[fmin, fmax]``, a *prominent peak* is a local maximum standing at least
   ``prominence_db`` above the median power of its ``±neighbourhood_bins`` (noise almost never does:
   an exponential power variable exceeds 10x its median with probability ~1e-3);
3. a peak is *stable* when a prominent peak lies within ``±drift_bins`` of it in each of the next
   ``stable_frames`` frames (a partial that lasts ``stable_frames * hop / sample_rate`` seconds);
4. ``tonal_energy_fraction`` = power in the main lobes (``±lobe_bins``) of stable peaks / all power
   in the band, over the frames above ``silence_db`` of the clip's loudest frame.

It uses no model and none of the stages, so it cannot share their assumptions; a generated clip is
read against the real clips (and the decode ceiling) measured the same way.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import maximum_filter1d, median_filter

from model.evaluation.judges import JudgeIdentity
from pipeline.config import ConfigError

DB_PER_POWER_DECADE = 10.0


@dataclasses.dataclass(frozen=True)
class ClarityConfig:
    """``model_eval.clarity`` in params.yaml."""

    sample_rate: int = 22050
    n_fft: int = 4096          # 5.4 Hz bins at 22.05 kHz: neighbouring semitones apart from ~100 Hz up
    hop: int = 512
    fmin: float = 60.0
    fmax: float = 5000.0
    prominence_db: float = 10.0
    neighbourhood_bins: int = 8
    drift_bins: int = 1
    lobe_bins: int = 2         # a Hann window's main lobe is +-2 bins
    stable_frames: int = 4     # ~93 ms at these settings
    silence_db: float = -50.0

    def __post_init__(self) -> None:
        if not 0 < self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"model_eval.clarity: need 0 < fmin < fmax <= sample_rate / 2, got {self}")
        if min(self.n_fft, self.hop, self.neighbourhood_bins, self.stable_frames) < 1 or self.hop > self.n_fft:
            raise ConfigError(f"model_eval.clarity: need positive sizes and hop <= n_fft, got {self}")


def band_power(samples: np.ndarray, sr: int, sample_rate: int, n_fft: int, hop: int, fmin: float,
               fmax: float) -> tuple[np.ndarray, np.ndarray]:
    """(C, n) or (n,) audio -> ((frames, bins) float64 Hann-STFT power of the mono mix at ``sample_rate``
    within ``[fmin, fmax]``, the bins' frequencies (bins,)); frame k starts at sample k * hop, and audio
    shorter than one window is zero-padded to it."""
    mono = np.asarray(samples, dtype=np.float32)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    if sr != sample_rate:
        from pipeline.audio import resample

        mono = resample(mono[None], sr, sample_rate)[0]
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop]
    spectrum = np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = (freqs >= fmin) & (freqs <= fmax)
    return (np.abs(spectrum[:, band]) ** 2).astype(np.float64), freqs[band]


class HarmonicClarity:
    """The statistic above, as a judge: ``hear(samples (C, n), sr) -> float`` in [0, 1] (NaN when silent)."""

    identity = JudgeIdentity(name="tonal_energy_fraction", package="chordflow", version="1",
                             model="energy share of stable prominent STFT partials (no learned weights)")

    def __init__(self, config: ClarityConfig = ClarityConfig()) -> None:
        self.config = config

    def setup(self) -> None:
        """Nothing to load (kept for the judges' common shape)."""

    def power(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """(C, n) audio -> (frames, bins) STFT power of the mono mix in ``[fmin, fmax]``."""
        cfg = self.config
        return band_power(samples, sr, cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.fmin, cfg.fmax)[0]

    def stable_peaks(self, power: np.ndarray) -> np.ndarray:
        """(frames, bins) power -> (frames, bins) bool: stable prominent peaks (see the module doc)."""
        cfg = self.config
        floor = np.finfo(np.float64).tiny
        local_max = (power >= maximum_filter1d(power, size=3, axis=1)) & (power > floor)
        median = median_filter(power, size=(1, 2 * cfg.neighbourhood_bins + 1), mode="nearest")
        ratio_db = DB_PER_POWER_DECADE * np.log10(np.maximum(power, floor) / np.maximum(median, floor))
        prominent = local_max & (ratio_db >= cfg.prominence_db)
        nearby = maximum_filter1d(prominent.astype(np.uint8), size=2 * cfg.drift_bins + 1, axis=1).astype(bool)
        stable = prominent.copy()
        n_frames = len(power)
        for ahead in range(1, cfg.stable_frames + 1):
            follows = np.zeros_like(stable)
            follows[:n_frames - ahead] = nearby[ahead:]
            stable &= follows
        return stable

    def hear(self, samples: np.ndarray, sr: int) -> float:
        """Tonal energy fraction of a (C, n) clip (NaN when every frame is silent)."""
        cfg = self.config
        power = self.power(samples, sr)
        frame_energy = power.sum(axis=1)
        if not np.any(frame_energy > 0):
            return float("nan")
        loud = frame_energy >= frame_energy.max() * 10 ** (cfg.silence_db / DB_PER_POWER_DECADE)
        lobes = maximum_filter1d(self.stable_peaks(power).astype(np.uint8), size=2 * cfg.lobe_bins + 1,
                                 axis=1).astype(bool)
        return float((power * lobes)[loud].sum() / frame_energy[loud].sum())
