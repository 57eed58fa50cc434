"""The melody stage: DeepSalience multif0 salience -> JASCO's 53-semitone melody condition.

Per track it stores, at the latent frame rate (50 fps):

* ``semitone_salience`` float16 (N, 53): thresholded salience of G2..B6 (0 = below threshold);
* ``melody_index`` int16 (N,): argmax semitone (0 = G2 ... 52 = B6), ``-1`` where the frame is
  unvoiced. JASCO's condition matrix is ``one_hot(melody_index)`` (all-zero rows where -1), see
  :func:`stages.melody.jasco.one_hot`;
* ``voiced_fraction`` float32: share of voiced frames (for filtering training crops).

The full 360-bin salience is not stored: at 86 fps x 360 bins it is 62 kB per second of audio in
float16 (3.6 TB for 16k hours), 60x the 53-bin condition, and nothing downstream reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import config_hash
from pipeline.stage import FeatureExtractor, FeatureSpec, pinned
from stages.melody.config import MelodyConfig
from stages.melody.constants import JASCO_FIRST_GROUP_BIN, JASCO_N_SEMITONES, SAMPLE_RATE


class MelodyExtractor(FeatureExtractor):
    """``numeric_threads`` is ``melody.threads`` (the base class reads ``config.threads``)."""

    name = "melody"
    # 2: the salience is computed at melody.threads in every process (was: all cores in serial runs)
    # 3: only the bins the condition reads go through the network (float rounding of the FFT layer
    #    moves); melody.hcqt shared_octaves by default
    version = "3"
    config_class = MelodyConfig

    @property
    def params_hash(self) -> str:
        return config_hash(self.config.identity(), {"stage": self.name, "version": self.version})

    def __init__(self, config: MelodyConfig) -> None:
        super().__init__(config)
        self._model = None

    # The model's fixed input format: the loader delivers mono at 22050 Hz.
    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def channels(self) -> int:
        return 1

    def features(self) -> tuple[FeatureSpec, ...]:
        rate = self.config.frame_rate
        return (
            FeatureSpec("semitone_salience", "float16", (None, JASCO_N_SEMITONES), rate),
            FeatureSpec("melody_index", "int16", (None,), rate),
            FeatureSpec("voiced_fraction", "float32", ()),
        )

    def setup(self) -> None:
        """Load the salience model once per worker (raises WeightsError if the file is missing)."""
        if self._model is None:
            from pipeline.allocator import retain_freed_memory
            from stages.melody.backends import load_salience_model

            retain_freed_memory()  # every window allocates the same activations again

            cfg = self.config
            self._model = load_salience_model(cfg.model, cfg.backend, cfg.weights_dir, cfg.threads, cfg.device,
                                              cfg.precision)

    @pinned
    def salience(self, samples: np.ndarray, sr: int, lowest_bin: int = 0) -> np.ndarray:
        """(C, N) float32 audio -> (360, T) salience of the configured model at 86.13 fps (bins below
        ``lowest_bin`` not computed: 0)."""
        from pipeline.audio import resample
        from stages.melody.chunking import predict_salience
        from stages.melody.hcqt import compute_hcqt

        self.setup()
        mono = np.asarray(samples, dtype=np.float32).reshape(-1, samples.shape[-1]).mean(axis=0, keepdims=True)
        mono = resample(mono, sr, SAMPLE_RATE)[0]
        cfg = self.config
        return predict_salience(self._model, compute_hcqt(mono, SAMPLE_RATE, cfg.hcqt), cfg.chunk_frames,
                                cfg.batch_size, cfg.overlap_frames, lowest_bin=lowest_bin)

    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        from stages.melody.jasco import jasco_melody

        # the condition reads bins from G2's group up only: 15 % of the network is not run
        salience = self.salience(samples, sr, lowest_bin=JASCO_FIRST_GROUP_BIN)
        semitones, index = jasco_melody(salience, samples.shape[-1], sr,
                                        self.config.frame_rate, self.config.threshold,
                                        self.config.frame_rate_rule)
        return {
            "semitone_salience": semitones.astype(np.float16),
            "melody_index": index,
            "voiced_fraction": np.float32(np.mean(index >= 0) if index.size else 0.0),
        }
