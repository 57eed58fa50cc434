"""Settings of ``chordflow eval``: ``model_eval`` and the analysers' stage sections, parsed once."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Mapping

from model.evaluation.embedding import EmbeddingConfig
from model.evaluation.judges.panel import JudgesConfig
from pipeline.config import ConfigError, load_section, read_params_if_present
from stages.chords.stage import ChordsConfig
from stages.drums.config import DrumsConfig
from stages.drums.constants import ONSET_WINDOW_S
from stages.melody.config import MelodyConfig


@dataclasses.dataclass(frozen=True)
class ModelEvalConfig:
    """``model_eval:`` in params.yaml (the analysers' own settings come from their stage sections)."""

    #: mir_eval chord comparison reported as chord_accuracy.
    chord_metric: Literal["root", "majmin", "thirds", "mirex"] = "majmin"
    #: Onset matching window (seconds) of onset_f1.
    onset_tolerance_s: float = ONSET_WINDOW_S
    #: Clips of the reference manifest embedded for the Fréchet distance (0 = all).
    reference_limit: int = 0
    frechet: EmbeddingConfig = EmbeddingConfig()
    #: The independent judges (model/evaluation/judges): CNN chords, CREPE melody, clarity, musicnn.
    judges: JudgesConfig = JudgesConfig()
    #: Numeric threads of one clip's analysis (the judges' networks; the stages keep their own
    #: ``threads``): the same count gives the same figures on every executor.
    threads: int = 1

    def __post_init__(self) -> None:
        if self.onset_tolerance_s <= 0 or self.reference_limit < 0 or self.threads < 1:
            raise ConfigError("model_eval: need onset_tolerance_s > 0, reference_limit >= 0 and threads >= 1, "
                              f"got {self}")


@dataclasses.dataclass(frozen=True)
class AnalyserConfigs:
    """The stage configs the analysers run with: params sections ``chords``, ``melody``, ``drums``."""

    chords: ChordsConfig = dataclasses.field(default_factory=ChordsConfig)
    melody: MelodyConfig = dataclasses.field(default_factory=MelodyConfig)
    drums: DrumsConfig = dataclasses.field(default_factory=DrumsConfig)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "AnalyserConfigs":
        """Parse the three sections (strictly, once, at the command's edge; missing ones at their defaults)."""
        return cls(chords=load_section(ChordsConfig, "chords", params),
                   melody=load_section(MelodyConfig, "melody", params),
                   drums=load_section(DrumsConfig, "drums", params))


def eval_settings(params: Mapping[str, Any] | str | Path | None) -> tuple[ModelEvalConfig, AnalyserConfigs]:
    """``model_eval`` and the analysers' stage sections, parsed once: ``params`` is a mapping or a
    YAML path (a path that does not exist, or None, gives every section at its defaults)."""
    if params is None:
        params = {}
    elif not isinstance(params, Mapping):
        params = read_params_if_present(params)
    return load_section(ModelEvalConfig, "model_eval", params), AnalyserConfigs.from_params(params)
