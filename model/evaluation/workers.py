"""What the workers of ``chordflow eval score`` run: one clip's analysis, or one reference clip
through one measure, on any executor (``executor:`` in params.yaml; serial, process, dask, SLURM).

Each process builds its analysers once per settings (:func:`analysers_for`) and keeps them for the
next task; the numerics run at ``model_eval.threads`` whoever runs them, so every executor gives
the figures of the serial path.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np

from model.evaluation.analysis import Analysers, ClipAnalysis
from model.evaluation.config import AnalyserConfigs, ModelEvalConfig
from model.evaluation.report import ClipRequest

if TYPE_CHECKING:
    from pipeline.executors import Executor

#: The analysers of this process, by the settings they were built from (the last settings only).
_CACHED: list[tuple[tuple[AnalyserConfigs, ModelEvalConfig], Analysers]] = []

#: What a reference clip can be measured with: the hand-made embedding, or a judge of the panel.
ReferenceMeasure = Literal["handmade", "embedding", "clarity"]


def analysers_for(stages: AnalyserConfigs, config: ModelEvalConfig) -> Analysers:
    """This process's :class:`Analysers` for these settings, built on first use."""
    key = (stages, config)
    for cached_key, analysers in _CACHED:
        if cached_key == key:
            return analysers
    analysers = Analysers(stages, config)
    _CACHED[:] = [(key, analysers)]
    return analysers


def analyse_clip(clip: ClipRequest, stages: AnalyserConfigs, config: ModelEvalConfig, embedding: bool,
                 judges: bool) -> ClipAnalysis:
    """:meth:`Analysers.analyse` of one clip at ``config.threads`` numeric threads."""
    from pipeline.threads import pinned_threads

    analysers = analysers_for(stages, config)
    with pinned_threads(config.threads):
        return analysers.analyse(clip, embedding=embedding, judges=judges)


def measure_reference(stages: AnalyserConfigs, config: ModelEvalConfig, measure: ReferenceMeasure,
                      samples: np.ndarray, sample_rate: int) -> Any:
    """One real reference clip (1, N) through ``measure``: its hand-made or musicnn (windows, D)
    embedding, or its tonal energy fraction."""
    from model.evaluation.embedding import embed
    from pipeline.threads import pinned_threads

    with pinned_threads(config.threads):
        if measure == "handmade":
            return embed(samples[0], config.frechet)
        panel = analysers_for(stages, config).judges
        if not panel.ready(measure):
            raise RuntimeError(f"judge {measure} not set up: {panel.skipped.get(measure)}")
        judge = panel.members[measure]
        return judge.embed(samples, sample_rate) if measure == "embedding" else judge.hear(samples, sample_rate)


def reference_measure(stages: AnalyserConfigs, config: ModelEvalConfig,
                      measure: ReferenceMeasure) -> Callable[[np.ndarray, int], Any]:
    """``measure`` as a picklable ``function(samples, sample_rate)`` for
    :func:`model.evaluation.embedding.over_manifest`."""
    return functools.partial(measure_reference, stages, config, measure)


def set_up_for(analysers: Analysers, clips: Sequence[ClipRequest], reference: bool, judges: bool) -> None:
    """Set up, here, every analyser and judge some clip will use: a missing one is then recorded
    once in ``skipped`` (the workers skip it the same way), and the scoring here has their settings."""
    wanted = [("chords", True), ("melody", any(c.melody is not None for c in clips)),
              ("drums", any(c.drums is not None for c in clips))]
    for part, used in wanted:
        if used:
            analysers.ready(part)
    if judges:
        for role, used in [("chords", True), ("clarity", True), ("melody", wanted[1][1]), ("embedding", reference)]:
            if used:
                analysers.judges.ready(role)


def analyse_clips(clips: Sequence[ClipRequest], stages: AnalyserConfigs, config: ModelEvalConfig, embedding: bool,
                  judges: bool, executor: Executor, progress: bool) -> dict[str, ClipAnalysis]:
    """Every clip's :class:`~model.evaluation.analysis.ClipAnalysis`, by clip id, run on ``executor``."""
    from pipeline.executors import run_all

    futures = run_all(executor, analyse_clip, [(clip, stages, config, embedding, judges) for clip in clips], "eval",
                      progress)
    return {clip.id: future.result() for clip, future in zip(clips, futures)}
