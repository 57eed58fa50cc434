"""Latents stage: a small codec interface (EnCodec 32/24 kHz, log-frequency spectrogram +
Griffin-Lim), the stage that encodes mix and drum stem, normalisation statistics,
and the round-trip / harmony / melody-pitch evaluation.

Public API:

* :class:`Codec`, :func:`make_codec`, :data:`CODECS`, :class:`CodecError`: the interface used by
  the stage, the trainer and the sampler (``encode``/``decode``/``coarse``);
* :class:`LatentsExtractor` / :class:`LatentsConfig`: the stage (registered as ``latents``);
* :class:`NormalisationStats`: the ``stats`` file (global and per-dimension mean/std).
"""

import importlib
from typing import Any

# Names are imported on first use: the codec configs import torch, and every ``chordflow`` process
# imports this package (the CLI lists its subcommands), chords and melody workers included.
_HOMES: dict[str, str] = {
    "CODECS": "stages.latents.codecs",
    "Codec": "stages.latents.codec",
    "CodecError": "stages.latents.codec",
    "LatentsConfig": "stages.latents.config",
    "LatentsExtractor": "stages.latents.stage",
    "NormalisationStats": "stages.latents.stats",
    "compute_stats": "stages.latents.stats",
    "make_codec": "stages.latents.codecs",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'stages.latents' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
