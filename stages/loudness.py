"""Loudness stage: frame-level RMS level in dBFS at the latent frame rate, plus track statistics.

Cheap and model-free; the trainer uses it to skip silent crops and the sampler to match levels.
It is also the stage the executor tests run on every backend, since it needs no weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from music.frames import frames_covering
from pipeline.constants import LATENT_FRAME_RATE
from pipeline.stage import FeatureExtractor, FeatureSpec

#: Level reported for digital silence (an RMS of exactly 0 has no logarithm).
SILENCE_FLOOR_DB: float = -120.0


@dataclasses.dataclass(frozen=True)
class LoudnessConfig:
    sample_rate: int = 22050
    channels: int = 1
    frame_rate: float = LATENT_FRAME_RATE
    #: Frames quieter than this (dBFS) count as silent in ``silent_fraction``.
    silence_threshold_db: float = -60.0


def frame_rms_db(samples: np.ndarray, sr: int, frame_rate: float) -> np.ndarray:
    """RMS level per frame in dBFS.

    Frame k covers samples [round(k*sr/fr), round((k+1)*sr/fr)); the track gives
    ceil(n_samples * fr / sr) frames, the last one possibly short.

    Args:
        samples: (channels, n) float array; channels are averaged in power.
    Returns:
        (n_frames,) float32.
    """
    power = np.mean(np.square(samples, dtype=np.float64), axis=0)
    n = power.shape[0]
    n_frames = frames_covering(n, sr, frame_rate)
    if n_frames == 0:
        return np.zeros(0, dtype=np.float32)
    bounds = np.round(np.arange(n_frames + 1) * sr / frame_rate).astype(np.int64)
    bounds[-1] = n
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    lengths = np.maximum(bounds[1:] - bounds[:-1], 1)
    mean_power = (cumulative[bounds[1:]] - cumulative[bounds[:-1]]) / lengths
    with np.errstate(divide="ignore"):
        level = 10.0 * np.log10(mean_power)
    return np.maximum(level, SILENCE_FLOOR_DB).astype(np.float32)


class LoudnessExtractor(FeatureExtractor):
    name = "loudness"
    version = "1"
    config_class = LoudnessConfig

    def features(self) -> tuple[FeatureSpec, ...]:
        return (
            FeatureSpec("rms_db", "float32", (None,), self.config.frame_rate),
            FeatureSpec("peak_db", "float32", ()),
            FeatureSpec("silent_fraction", "float32", ()),
        )

    #: Hours-long tracks are measured chunk by chunk (see :meth:`extract_stream`).
    stream_chunk_seconds = 60.0

    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        levels = frame_rms_db(samples, sr, self.config.frame_rate)
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        return self._values(levels, peak)

    def _values(self, levels: np.ndarray, peak: float) -> dict[str, Any]:
        peak_db = SILENCE_FLOOR_DB if peak == 0.0 else max(20.0 * np.log10(peak), SILENCE_FLOOR_DB)
        silent = float(np.mean(levels < self.config.silence_threshold_db)) if levels.size else 1.0
        return {"rms_db": levels, "peak_db": np.float32(peak_db), "silent_fraction": np.float32(silent)}

    def extract_stream(self, chunks: Iterator[np.ndarray], sr: int) -> dict[str, Any]:
        """The same frames as :func:`frame_rms_db` on the whole track, one chunk in memory at a time:
        per-frame power sums accumulate across chunk edges (a frame may straddle two chunks)."""
        fr = self.config.frame_rate
        sums: list[np.ndarray] = []
        carry_sum, start, peak = 0.0, 0, 0.0
        for chunk in chunks:
            power = np.mean(np.square(chunk, dtype=np.float64), axis=0)
            stop = start + power.shape[0]
            peak = max(peak, float(np.max(np.abs(chunk))) if chunk.size else 0.0)
            # frame k covers [round(k sr / fr), round((k+1) sr / fr)); close the frames that end in this chunk
            first = int(np.floor(start * fr / sr))
            bounds = np.round(np.arange(first, frames_covering(stop, sr, fr) + 2) * sr / fr).astype(np.int64)
            closed = bounds[(bounds > start) & (bounds <= stop)]
            cumulative = np.concatenate([[0.0], np.cumsum(power)])
            edges = np.concatenate([[start], closed]) - start
            parts = cumulative[edges[1:]] - cumulative[edges[:-1]]
            if parts.size:
                parts[0] += carry_sum
                sums.append(parts)
                carry_sum = float(cumulative[-1] - cumulative[edges[-1]])
            else:
                carry_sum += float(cumulative[-1])
            start = stop
        n_frames = frames_covering(start, sr, fr)
        totals = np.concatenate(sums + [np.array([carry_sum])])[:n_frames] if n_frames else np.zeros(0)
        bounds = np.round(np.arange(n_frames + 1) * sr / fr).astype(np.int64)
        if n_frames:
            bounds[-1] = start
        lengths = np.maximum(bounds[1:] - bounds[:-1], 1)
        with np.errstate(divide="ignore"):
            levels = np.maximum(10.0 * np.log10(totals / lengths), SILENCE_FLOOR_DB).astype(np.float32)
        return self._values(levels, peak)
