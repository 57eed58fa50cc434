"""The separator seam: anything that turns a mix into a drum stem.

A separator has a ``name`` ("hpss", "demucs"), a ``label`` that names exactly what made the stem
("hpss", "demucs/htdemucs"), ``describe()`` (JSON settings recorded next to every stem, so an HPSS
stem can never pass for a Demucs stem), the input format it wants from the loader, a ``setup()``
that loads heavy resources once, and ``separate(samples (C, N), sr) -> stem (C', N)`` at ``sr``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from stages.drums.config import DrumsConfig


@runtime_checkable
class Separator(Protocol):
    name: str

    @property
    def label(self) -> str:
        """Short identity written in the ``separator`` column and the stem file's tags."""

    @property
    def input_sample_rate(self) -> int | None:
        """Sample rate the loader should deliver (None: the file's own)."""

    @property
    def input_channels(self) -> int | None:
        """Channel count the loader should deliver (None: the file's own)."""

    def setup(self) -> None:
        """Load models once per worker (a no-op for model-free separators)."""

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable settings (and weights) that made the stems."""

    def separate(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """Drum stem of ``samples`` (C, N) float32 at ``sr``: (C', N) float32 at ``sr``."""


def make_separator(config: DrumsConfig) -> Separator:
    """The separator that ``config.separator`` names (Demucs is imported only when asked for)."""
    if config.separator == "hpss":
        from stages.drums.hpss import HpssSeparator

        return HpssSeparator(config.hpss, config.sample_rate, config.channels)
    if config.separator == "demucs":
        from stages.drums.demucs_separator import DemucsSeparator

        return DemucsSeparator(config.demucs)
    raise ValueError(f"unknown separator {config.separator!r}")
