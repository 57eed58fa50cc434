"""Latents stage: a small codec interface (EnCodec 32/24 kHz, log-frequency spectrogram +
Griffin-Lim), the stage that encodes mix and drum stem, normalisation statistics,
and the round-trip / harmony / melody-pitch evaluation.

Public API:

* :class:`Codec`, :func:`make_codec`, :data:`CODECS`, :class:`CodecError`: the interface used by
  the stage, the trainer and the sampler (``encode``/``decode``/``coarse``);
* :class:`LatentsExtractor` / :class:`LatentsConfig`: the stage (registered as ``latents``);
* :class:`NormalisationStats`: the ``stats`` file (global and per-dimension mean/std).
"""

from stages.latents.codec import Codec, CodecError

from stages.latents.codecs import CODECS, make_codec
from stages.latents.config import LatentsConfig
from stages.latents.stage import LatentsExtractor
from stages.latents.stats import NormalisationStats, compute_stats

__all__ = [
    "CODECS",
    "Codec",
    "CodecError",
    "LatentsConfig",
    "LatentsExtractor",
    "NormalisationStats",
    "compute_stats",
    "make_codec",
]
