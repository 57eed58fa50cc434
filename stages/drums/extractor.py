"""The drums stage: a separated drum stem (FLAC next to the shards) and its onset envelope.

JASCO conditions on a coarse codec view of the drum stem, which Demucs separates from the mix;
the latents stage later encodes the stem written here. Each row records which separator made the
stem (``separator`` label and ``separator_settings``), and the params hash covers the active
separator's settings, so stems from different separators never mix in one folder.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pipeline.audio import convert_channels, resample
from pipeline.config import config_hash
from pipeline.stage import FeatureExtractor, FeatureSpec, TrackContext
from stages.drums.config import DrumsConfig
from stages.drums.onsets import onset_envelope
from stages.drums.separators import Separator, make_separator
from stages.drums.stems import STEM_COLUMN, write_stem


class DrumsExtractor(FeatureExtractor):
    name = "drums"
    # 2: the onset envelope (mel filterbank products) is computed at 1 thread in every process; serial
    # runs used all cores and differed from the workers' shards by up to one float32 step
    version = "2"
    config_class = DrumsConfig

    def __init__(self, config: DrumsConfig) -> None:
        super().__init__(config)
        self.separator: Separator = make_separator(config)

    # The loader delivers what the separator wants (44.1 kHz stereo for Demucs, the stem format
    # for HPSS); the stem is converted to ``config.sample_rate``/``channels`` afterwards.
    @property
    def sample_rate(self) -> int | None:
        return self.separator.input_sample_rate

    @property
    def channels(self) -> int | None:
        return self.separator.input_channels

    @property
    def params_hash(self) -> str:
        # the active separator's settings only (see DrumsConfig.identity)
        return config_hash(self.config.identity(), {"stage": self.name, "version": self.version})

    def features(self) -> tuple[FeatureSpec, ...]:
        return (
            FeatureSpec(STEM_COLUMN, "string"),
            FeatureSpec("onset_envelope", "float32", (None,), self.config.frame_rate),
            FeatureSpec("separator", "string"),
            FeatureSpec("separator_settings", "json"),
        )

    def setup(self) -> None:
        self.separator.setup()

    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        """Separate and describe the drums of ``samples`` (C, N) at ``sr``.

        Returns every feature except ``stem_path``, plus ``"stem"``: the drum stem, float32
        (config.channels, round(N * config.sample_rate / sr)) clipped to [-1, 1], which
        :meth:`process` writes to disk.
        """
        samples = np.asarray(samples, dtype=np.float32)
        return self._describe(samples, sr, self.separator.separate(samples, sr))

    def _describe(self, samples: np.ndarray, sr: int, stem: np.ndarray) -> dict[str, Any]:
        """Stem in the stored format (channels, rate, length, clipped) plus its envelope and origin."""
        stem = convert_channels(np.ascontiguousarray(stem, dtype=np.float32), self.config.channels)
        stem = resample(stem, sr, self.config.sample_rate)
        length = round(samples.shape[1] * self.config.sample_rate / sr)
        stem = stem[:, :length] if stem.shape[1] >= length else np.pad(stem, ((0, 0), (0, length - stem.shape[1])))
        stem = np.clip(stem, -1.0, 1.0)  # what 16-bit FLAC stores; the envelope describes that
        return {
            "stem": stem,
            "onset_envelope": onset_envelope(stem, self.config.sample_rate, self.config.frame_rate, self.config.onset),
            "separator": self.separator.label,
            "separator_settings": self.separator.describe(),
        }

    def process(self, samples: np.ndarray, sr: int, context: TrackContext) -> dict[str, Any]:
        """:meth:`extract`, then write the stem as ``<out_dir>/stems/<track_id>.flac`` (last, so a
        track that fails earlier leaves no file)."""
        return self._write(self.extract(samples, sr), context)

    def _write(self, values: dict[str, Any], context: TrackContext) -> dict[str, Any]:
        stem = values.pop("stem")
        values[STEM_COLUMN] = write_stem(context.out_dir, context.track_id, stem, self.config.sample_rate,
                                         self.separator.label)
        return values

    def tracks_per_call(self) -> int:
        """Demucs on a GPU separates segments of several tracks in one batch; HPSS goes one by one."""
        return getattr(self.separator, "tracks_per_call", 1)

    def process_many(self, items: Sequence[tuple[np.ndarray, int, TrackContext]]) -> list[dict[str, Any] | Exception]:
        rates = {sr for _, sr, _ in items}
        if len(items) < 2 or len(rates) != 1 or not hasattr(self.separator, "separate_many"):
            return super().process_many(items)
        try:
            stems = self.separator.separate_many([samples for samples, _, _ in items], rates.pop())
        except Exception:  # retry one by one so that only the track at fault fails
            return super().process_many(items)
        results: list[dict[str, Any] | Exception] = []
        for (samples, sr, context), stem in zip(items, stems):
            try:
                results.append(self._write(self._describe(np.asarray(samples, dtype=np.float32), sr, stem), context))
            except Exception as exc:
                results.append(exc)
        return results
