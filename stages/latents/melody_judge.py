"""Melody preservation for ``chordflow latents eval``: the melody stage's pitch on decoded audio
against the same on the original audio.

The judge is the project's melody stage itself (DeepSalience multif0 -> JASCO's 53-semitone
condition, configured by the ``melody`` section of params.yaml, weights resolved the way the stage
resolves them). Its ``melody_index`` (as Hz, 0 = unvoiced) is scored against the truth melody with
the melody evaluation's mir_eval wrapper: raw pitch accuracy and raw chroma accuracy, both over the
truth-voiced frames, so a note the condition lost (unvoiced estimate) counts as wrong. Clips are
pooled weighted by their truth-voiced frames, as chord accuracy is pooled by duration.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

#: mir_eval metrics (our key names in :mod:`stages.melody.evaluate`) -> prefix in the eval metrics.
MELODY_METRICS: dict[str, str] = {"raw_pitch_accuracy": "melody_pitch", "raw_chroma_accuracy": "melody_chroma"}


@dataclasses.dataclass(frozen=True)
class MelodyScore:
    """One clip's accuracies (keys of :data:`MELODY_METRICS`) and its truth-voiced frame count."""

    accuracies: dict[str, float]
    voiced_frames: int


class MelodyJudge:
    """The melody stage scored against a truth melody."""

    def __init__(self, melody_params: Mapping[str, Any] | None = None) -> None:
        """Build and load the stage; raises :class:`stages.melody.weights.WeightsError` when the
        weight file is missing (see :func:`load_melody_judge`)."""
        from stages.melody import MelodyExtractor

        # melody.threads as configured: at another count the salience may differ in its last bits
        self.stage = MelodyExtractor.from_params(melody_params)
        self.stage.setup()

    def score(self, wav: np.ndarray, sample_rate: int, truth: tuple[np.ndarray, np.ndarray]) -> MelodyScore:
        """Mono ``wav`` (N,) at ``sample_rate`` against ``truth = (times, f0 Hz)`` (0 = unvoiced)."""
        from stages.melody.evaluate import condition_f0, score

        index = self.stage.extract(np.asarray(wav, dtype=np.float32)[None, :], sample_rate)["melody_index"]
        est_times, est_f0 = condition_f0(index, self.stage.config.frame_rate)
        ref_times, ref_f0 = truth
        metrics = score(ref_times, ref_f0, est_times, est_f0)
        return MelodyScore({key: metrics[key] for key in MELODY_METRICS}, int(np.count_nonzero(ref_f0 > 0)))


def load_melody_judge(melody_params: Mapping[str, Any] | None) -> tuple[MelodyJudge | None, str | None]:
    """``(judge, None)``, or ``(None, reason)`` when the DeepSalience weights are not there: melody
    preservation is then skipped, the rest of the evaluation still runs."""
    from stages.melody.weights import WeightsError

    try:
        return MelodyJudge(melody_params), None
    except WeightsError as exc:
        return None, f"melody stage weights missing: {str(exc).split('. ')[0]}"


def truth_melody(truth_path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(times, f0)`` of a truth file, or None when it has no melody or no voiced frame."""
    from stages.melody.evaluate import read_truth_melody

    try:
        times, f0 = read_truth_melody(truth_path)
    except ValueError:  # e.g. a chords-only truth file: nothing to score the melody against
        return None
    return (times, f0) if np.any(f0 > 0) else None


def pooled_melody(scores: Iterable[MelodyScore]) -> dict[str, float]:
    """Accuracies averaged over clips, weighted by truth-voiced frames."""
    scores = list(scores)
    weights = np.array([s.voiced_frames for s in scores], dtype=np.float64)
    return {key: float(np.dot(weights, [s.accuracies[key] for s in scores]) / weights.sum())
            for key in MELODY_METRICS}


def melody_summary(original: Iterable[MelodyScore], decoded: Iterable[MelodyScore]) -> dict[str, float]:
    """``melody_{pitch,chroma}_accuracy_{original,decoded}`` and ``melody_{pitch,chroma}_preservation``
    (decoded ÷ original; 1.0 means the codec loses none of the melody stage's pitch)."""
    original, decoded = list(original), list(decoded)
    before, after = pooled_melody(original), pooled_melody(decoded)
    summary: dict[str, float] = {"melody_clips": len(decoded)}
    for key, prefix in MELODY_METRICS.items():
        summary[f"{prefix}_accuracy_original"] = before[key]
        summary[f"{prefix}_accuracy_decoded"] = after[key]
        summary[f"{prefix}_preservation"] = after[key] / before[key] if before[key] > 0 else float("nan")
    return summary
