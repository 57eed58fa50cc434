"""A stage for executor tests that records, in a file, each process that set it up."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from pipeline.stage import FeatureExtractor, FeatureSpec

COUNTING_STAGE = "tests.stage_helpers:CountingExtractor"


@dataclasses.dataclass(frozen=True)
class CountingConfig:
    log_path: str = ""
    sample_rate: int = 8000
    channels: int = 1


class CountingExtractor(FeatureExtractor):
    name = "counting"
    version = "1"
    config_class = CountingConfig

    def features(self) -> tuple[FeatureSpec, ...]:
        return (FeatureSpec("n_samples", "int64", ()),)

    def setup(self) -> None:  # stands for loading a heavy model
        with open(self.config.log_path, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        return {"n_samples": samples.shape[1]}
