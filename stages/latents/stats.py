"""Normalisation statistics of stored latents: the ``stats`` file read by trainer and sampler.

Computed over the tracks of the training manifest (all tracks of the folder by default) in
float64, merging per-track moments (Chan et al.) in sorted track order, so the same inputs give
the same file byte for byte. The file holds both the global scalar mean/std over every value (what
JASCO normalises with) and per-dimension mean/std (an option); :meth:`NormalisationStats.normalise`
applies either.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
from tqdm import tqdm

from pipeline.atomic import atomic_write_text

Mode = Literal["global", "per_dim"]
STATS_FORMAT = "chordflow.latents.stats/1"
#: std below this is treated as this (a constant dimension must not blow up on normalisation).
MIN_STD = 1e-5


@dataclasses.dataclass(frozen=True)
class NormalisationStats:
    column: str
    codec: str
    params_hash: str
    frame_rate: float
    tracks: int
    frames: int
    mean: float
    std: float
    dim_mean: tuple[float, ...]
    dim_std: tuple[float, ...]

    def arrays(self, mode: Mode) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) broadcastable to (T, D) for ``mode``."""
        if mode == "global":
            return np.float32(self.mean), np.float32(max(self.std, MIN_STD))
        if mode == "per_dim":
            return (np.asarray(self.dim_mean, dtype=np.float32),
                    np.maximum(np.asarray(self.dim_std, dtype=np.float32), MIN_STD))
        raise ValueError(f"normalisation mode must be 'global' or 'per_dim', got {mode!r}")

    def normalise(self, latents: np.ndarray, mode: Mode = "global") -> np.ndarray:
        mean, std = self.arrays(mode)
        return ((np.asarray(latents, dtype=np.float32) - mean) / std).astype(np.float32)

    def denormalise(self, latents: np.ndarray, mode: Mode = "global") -> np.ndarray:
        mean, std = self.arrays(mode)
        return (np.asarray(latents, dtype=np.float32) * std + mean).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": STATS_FORMAT, **dataclasses.asdict(self)}
        atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "NormalisationStats":
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read latent statistics: {exc}") from exc
        if payload.pop("format", None) != STATS_FORMAT:
            raise ValueError(f"{path}: not a {STATS_FORMAT} file")
        payload["dim_mean"] = tuple(payload["dim_mean"])
        payload["dim_std"] = tuple(payload["dim_std"])
        return cls(**payload)


def merge_moments(a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray]):
    """Merge (count, mean, M2) of two sets (Chan et al.'s parallel variance)."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    if n == 0:
        return a
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * n_b / n)


def compute_stats(features_dir: str | Path, track_ids: Iterable[str] | None = None, column: str = "latents",
                  progress: bool = True) -> NormalisationStats:
    """Statistics of ``column`` over ``track_ids`` (default: every track) of a latents folder."""
    from pipeline.reader import StageStore
    from stages.latents.config import LatentsConfig

    store = StageStore(features_dir)
    spec = next((s for s in store.info.features if s.name == column), None)
    if spec is None:
        raise ValueError(f"{features_dir}: stage {store.stage!r} has no column {column!r}")
    available = set(store.track_ids())
    wanted = sorted(available if track_ids is None else set(track_ids) & available)
    if not wanted:
        raise ValueError(f"{features_dir}: none of the requested tracks has {column!r} (training manifest mismatch?)")
    dim = spec.shape[1]
    moments = (0, np.zeros(dim), np.zeros(dim))
    for track_id in tqdm(wanted, desc="latent stats", unit="track", disable=not progress):
        values = np.asarray(store.get(track_id)[column], dtype=np.float64).reshape(-1, dim)
        if len(values):
            mean = values.mean(axis=0)
            moments = merge_moments(moments, (len(values), mean, ((values - mean) ** 2).sum(axis=0)))
    frames, dim_mean, m2 = moments
    if frames == 0:
        raise ValueError(f"{features_dir}: the selected tracks hold no frames")
    grand_mean = float(dim_mean.mean())
    # every dimension has the same frame count, so the global M2 is the sum of per-dim M2 plus the
    # spread of the per-dim means around the grand mean
    global_var = (m2.sum() + frames * np.sum((dim_mean - grand_mean) ** 2)) / (frames * dim)
    return NormalisationStats(
        column=column, codec=store.config(LatentsConfig).codec, params_hash=store.info.params_hash,
        frame_rate=float(spec.frame_rate or 0.0), tracks=len(wanted), frames=int(frames), mean=grand_mean,
        std=float(np.sqrt(global_var)), dim_mean=tuple(float(v) for v in dim_mean),
        dim_std=tuple(float(v) for v in np.sqrt(m2 / frames)),
    )


def describe(stats: NormalisationStats) -> dict[str, Any]:
    return {"codec": stats.codec, "tracks": stats.tracks, "frames": stats.frames, "mean": stats.mean, "std": stats.std}
