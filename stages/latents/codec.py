"""The codec interface shared by the latents stage, the trainer and the sampler.

A codec turns mono audio at its ``sample_rate`` into continuous latents of shape (T, D) at
``frame_rate = sample_rate / hop_length`` and back. ``coarse`` gives the low-information view of
the same latents that conditions generation on drums (JASCO: the first EnCodec codebook).
Backends are built by name through :func:`make_codec`, each from its own frozen config
(``latents.<backend>`` in params.yaml); heavy weights load in the constructor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


class CodecError(RuntimeError):
    """A codec cannot be built (missing checkpoint, bad config) or cannot encode/decode its input."""


class Codec(ABC):
    """Mono audio <-> (T, D) float latents. Subclasses set the class attributes and the sizes."""

    #: Registry name (``latents.codec`` in params.yaml).
    name: ClassVar[str]
    #: Frozen dataclass of the backend's options.
    config_class: ClassVar[type]
    #: Whether decoded audio keeps the input's phase (SI-SDR is only meaningful then).
    phase_preserving: ClassVar[bool]

    sample_rate: int
    #: Input samples per latent frame.
    hop_length: int
    #: Latent channels D.
    dim: int
    #: Channels of :meth:`coarse`.
    coarse_dim: int

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def context_samples(self) -> int:
        """Samples on each side that a frame depends on; chunks overlap by at least this much.
        0 means unbounded (recurrent models): the caller's chunk context is used alone."""
        return 0

    @abstractmethod
    def n_frames(self, n_samples: int) -> int:
        """Number of latent frames :meth:`encode` returns for ``n_samples`` input samples."""

    @abstractmethod
    def encode(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 mono at ``sample_rate`` -> (n_frames(N), dim) float32 latents."""

    @abstractmethod
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(T, dim) latents -> (M,) float32 mono at ``sample_rate``, M ≈ T * hop_length."""

    def decode_chunked(self, latents: np.ndarray, chunk_frames: int, context_frames: int) -> np.ndarray:
        """(T, dim) -> (M,) as :meth:`decode`, ``chunk_frames`` at a time, each decoded with
        ``context_frames`` of latents on either side that are then cut away: memory follows the
        chunk, not the piece. A piece of at most ``chunk_frames + 2 * context_frames`` frames is
        decoded whole, so its samples are exactly :meth:`decode`'s."""
        total = len(latents)
        if chunk_frames <= 0 or total <= chunk_frames + 2 * context_frames:
            return self.decode(latents)
        parts = []
        for start in range(0, total, chunk_frames):
            stop = min(start + chunk_frames, total)
            first, last = max(0, start - context_frames), min(total, stop + context_frames)
            wav = self.decode(latents[first:last])
            skip = (start - first) * self.hop_length
            parts.append(wav[skip: skip + (stop - start) * self.hop_length] if stop < total else wav[skip:])
        return np.concatenate(parts)

    @abstractmethod
    def coarse(self, latents: np.ndarray) -> np.ndarray:
        """(T, dim) latents -> (T, coarse_dim) float32 low-information view (drum condition)."""

    def transpose(self, latents: np.ndarray, semitones: int) -> np.ndarray:
        """(T, dim) latents of the same audio shifted by ``semitones`` (training augmentation).

        Only codecs whose channels are a frequency axis can do this; others raise CodecError."""
        raise CodecError(f"{self.name}: latents have no frequency axis; cannot transpose them")

    def _check_wav(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise CodecError(f"{self.name}: expected mono samples of shape (N,), got {wav.shape}")
        return np.ascontiguousarray(wav)

    def _check_latents(self, latents: np.ndarray) -> np.ndarray:
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.dim:
            raise CodecError(f"{self.name}: expected latents of shape (T, {self.dim}), got {latents.shape}")
        return np.ascontiguousarray(latents)

    def describe(self) -> dict[str, Any]:
        """Plain-data summary (stored next to stats and in eval metrics)."""
        return {"codec": self.name, "sample_rate": self.sample_rate, "hop_length": self.hop_length,
                "frame_rate": self.frame_rate, "dim": self.dim, "coarse_dim": self.coarse_dim}
