"""``latents:`` in params.yaml: which codec, its options, chunking, and the drums input."""

from __future__ import annotations

import dataclasses
from typing import Any

from stages.latents.constants import DEFAULT_CODEC
from stages.latents.encodec_hf import Encodec32Config
from stages.latents.encodec_jasco import JascoEncodecConfig
from stages.latents.encodec_meta import Encodec24Config
from stages.latents.logspec import LogSpecConfig


@dataclasses.dataclass(frozen=True)
class LatentsConfig:
    codec: str = DEFAULT_CODEC
    #: Drums stage output folder (``chordflow latents extract --drums DIR``); None encodes the mix only.
    drums_dir: str | None = None
    #: Frames owned per encoded chunk (long tracks) and the overlap on each side, in seconds.
    chunk_seconds: float = 30.0
    chunk_context_seconds: float = 1.0
    #: A drum stem may differ from the mix by this much (resampling rounding); more is an error.
    drums_length_tolerance_s: float = 0.1
    # One section per backend; only the chosen one matters (and enters the params hash).
    logspec_griffinlim: LogSpecConfig = dataclasses.field(default_factory=LogSpecConfig)
    encodec_32khz: Encodec32Config = dataclasses.field(default_factory=Encodec32Config)
    jasco_encodec: JascoEncodecConfig = dataclasses.field(default_factory=JascoEncodecConfig)
    encodec_24khz: Encodec24Config = dataclasses.field(default_factory=Encodec24Config)

    def codec_options(self) -> Any:
        """The chosen backend's config (unknown codec names fail in :func:`make_codec`)."""
        from stages.latents.codecs import CODECS

        return getattr(self, self.codec) if self.codec in CODECS else None
