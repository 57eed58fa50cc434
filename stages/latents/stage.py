"""The latents stage: codec latents of the mix and coarse latents of the drum stem, per track.

Per track it stores

* ``latents``: (T, D) float16, the mix encoded by the configured codec at its frame rate;
* ``drums_coarse``: (T, D_coarse) float16, the drum stem (written by the drums stage) encoded and
  reduced by ``codec.coarse`` — JASCO's drum condition; only when ``drums_dir`` is set.

Long tracks are encoded in overlapping chunks (:mod:`stages.latents.chunking`). The codec name and
options are in the shard metadata (stage params) and the params hash; the frame rate is on each
time-aligned column.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import config_hash, config_to_dict
from pipeline.stage import FeatureExtractor, FeatureSpec, TrackContext, pinned
from stages.latents.chunking import encode_chunked
from stages.latents.codec import Codec, CodecError
from stages.latents.codecs import CODECS, make_codec
from stages.latents.config import LatentsConfig

LATENTS_DTYPE = "float16"
#: Column of the drums stage that holds the stem path (relative to the drums folder).
DRUMS_STEM_COLUMN = "stem_path"


class LatentsExtractor(FeatureExtractor):
    name = "latents"
    version = "1"
    config_class = LatentsConfig

    def __init__(self, config: LatentsConfig) -> None:
        if config.codec not in CODECS:
            raise CodecError(f"latents.codec: unknown codec {config.codec!r}; available: {', '.join(sorted(CODECS))}")
        super().__init__(config)

    @functools.cached_property
    def codec(self) -> Codec:
        """The codec, built on first use (weights load once per worker)."""
        return make_codec(self.config.codec, self.config.codec_options())

    @functools.cached_property
    def _drums_store(self) -> Any:
        from pipeline.reader import StageStore

        return StageStore(self.config.drums_dir)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def channels(self) -> int:
        return 1  # every codec here is mono

    @property
    def params_hash(self) -> str:
        # Only the chosen backend's options decide the output; the others must not invalidate it.
        common = {k: v for k, v in config_to_dict(self.config).items() if k not in CODECS}
        return config_hash(self.config.codec_options(), {"stage": self.name, "version": self.version, **common})

    def features(self) -> tuple[FeatureSpec, ...]:
        codec = self.codec
        specs = [FeatureSpec("latents", LATENTS_DTYPE, (None, codec.dim), codec.frame_rate)]
        if self.config.drums_dir:
            specs.append(FeatureSpec("drums_coarse", LATENTS_DTYPE, (None, codec.coarse_dim), codec.frame_rate))
        return tuple(specs)

    def setup(self) -> None:
        _ = self.codec

    @pinned
    def encode(self, wav: np.ndarray) -> np.ndarray:
        """(N,) mono at the codec rate -> (T, D) float32 latents, chunked as configured."""
        return encode_chunked(self.codec, wav, self.config.chunk_seconds, self.config.chunk_context_seconds)

    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        """Mix latents of (1, N) samples at the codec rate (``drums_coarse`` needs :meth:`process`)."""
        self._check_rate(sr)
        return {"latents": self.encode(samples[0]).astype(LATENTS_DTYPE)}

    def process(self, samples: np.ndarray, sr: int, context: TrackContext) -> dict[str, Any]:
        values = self.extract(samples, sr)
        if self.config.drums_dir:
            stem = self.drum_stem(context.track_id, samples.shape[1])
            values["drums_coarse"] = self.codec.coarse(self.encode(stem)).astype(LATENTS_DTYPE)
        return values

    def drum_stem(self, track_id: str, n_samples: int) -> np.ndarray:
        """The drums stage's stem of ``track_id``, mono at the codec rate, cut/padded to ``n_samples``."""
        from pipeline.audio import load_audio

        row = self._drums_store.get(track_id)  # KeyError names the folder and the track
        path = Path(self.config.drums_dir) / str(row[DRUMS_STEM_COLUMN])
        stem, _ = load_audio(path, sample_rate=self.codec.sample_rate, channels=1)
        difference = abs(stem.shape[1] - n_samples) / self.codec.sample_rate
        if difference > self.config.drums_length_tolerance_s:
            raise ValueError(f"{path}: drum stem lasts {stem.shape[1] / self.codec.sample_rate:.3f}s but the mix "
                             f"{n_samples / self.codec.sample_rate:.3f}s; re-run the drums stage")
        stem = stem[0, :n_samples]
        return np.pad(stem, (0, n_samples - len(stem)))

    def _check_rate(self, sr: int) -> None:
        if sr != self.codec.sample_rate:
            raise ValueError(f"latents: samples at {sr} Hz, the {self.codec.name} codec needs {self.codec.sample_rate} Hz")
