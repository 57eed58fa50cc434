"""``chordflow eval score``: how well generated audio follows the controls it was given.

Generated clips (a generation report, :mod:`model.evaluation.report`) are re-analysed with the project's
own stages, configured by the same ``params.yaml`` sections as the features (``chords``,
``melody``, ``drums``), and scored per clip:

* chords: Chordino timeline vs the clip's ``chords``. ``chord_accuracy`` is mir_eval's
  ``chord_metric`` (majmin by default), duration-weighted over the requested span, as in
  :mod:`stages.chords.evaluate`. ``chord_iou`` is a frame IOU on the 50 fps chord indices of
  :func:`stages.chords.timeline_to_frames` (requested and extracted, same frames): the mean, over
  the chord classes present in either sequence, of ``|frames where both are c| / |frames where
  either is c|``. ``N`` is not a class (a stray no-chord frame at the start would otherwise add a
  0 term), but its frames still count in each class's union; so an all-``N`` extraction scores 0.
  Classes are vocabulary indices, stricter than majmin (G7 requested, G heard: 0 for both).
  ``no_chord_fraction``: share of frames where the analyser hears no chord;
* melody (clips with ``melody``): the melody stage's ``melody_index`` of the generated audio vs the
  argmax of the requested (T, 53) matrix, on the frames where the request is voiced (row max > 0):
  ``melody_accuracy`` (same semitone; an unvoiced extraction counts as wrong) and
  ``melody_pitch_class_accuracy`` (same pitch class). Skipped, with the reason recorded, when the
  DeepSalience weights are missing;
* drums (clips with ``drums``): ``onset_f1`` (mir_eval.onset, ``onset_tolerance_s``) of the onsets
  of the generated audio's drum part (separated by the drums stage's separator) against the
  onsets of the reference drums audio (a drum track, e.g. the drums stage's stem, analysed as is)
  within the clip's duration.

Every score has a **chance** twin (``*_chance``): the same extraction scored against the request of
another clip of the same group, the next one in report order (cyclically) whose request differs.
A Fréchet distance between the generated set and a real reference set is added by
:mod:`model.evaluation.embedding` (see there for why it is not called FAD). Metrics are aggregated per
``group`` (mean, std, n).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from model.evaluation.config import eval_settings
from model.evaluation.report import ClipRequest
from stages.chords.vocab import NO_CHORD_INDEX
from stages.drums.constants import ONSET_WINDOW_S

if TYPE_CHECKING:
    from model.evaluation.embedding import HeldoutReal
    from pipeline.executors import Executor

METRICS_FORMAT = "chordflow.model_eval/1"
#: Per-clip score columns, in table order; each also has a ``<name>_chance`` twin.
SCORES: tuple[str, ...] = ("chord_accuracy", "chord_iou", "melody_accuracy", "melody_pitch_class_accuracy",
                           "onset_f1", "chord_accuracy_cnn", "melody_accuracy_crepe",
                           "melody_pitch_class_accuracy_crepe")
#: Per-clip descriptive columns (aggregated too, no chance twin).
DESCRIPTIVE: tuple[str, ...] = ("no_chord_fraction", "no_chord_fraction_cnn", "tonal_energy_fraction")
#: Which analyser hears each column: a stage (the extractors that made the training conditions) or a
#: judge role of model/evaluation/judges/panel.py (independent of them).
COLUMN_JUDGES: dict[str, str] = {
    "chord_accuracy": "stage:chords", "chord_iou": "stage:chords", "no_chord_fraction": "stage:chords",
    "melody_accuracy": "stage:melody", "melody_pitch_class_accuracy": "stage:melody", "onset_f1": "stage:drums",
    "chord_accuracy_cnn": "judge:chords", "no_chord_fraction_cnn": "judge:chords",
    "melody_accuracy_crepe": "judge:melody", "melody_pitch_class_accuracy_crepe": "judge:melody",
    "tonal_energy_fraction": "judge:clarity"}
SEMITONES_PER_OCTAVE = 12


# ----------------------------------------------------------------------------- pure scores
def requested_segments(changes: Sequence[tuple[str, float]], duration_s: float) -> list[tuple[str, float, float]]:
    """``[(label, start)]`` -> ``(label, start, end)`` segments, the last chord ending at ``duration_s``
    (chords starting at or after the end are dropped)."""
    from stages.chords.frames import as_segments

    return [(label, start, min(end, duration_s)) for label, start, end in as_segments(changes, end_s=duration_s)
            if start < duration_s]


def chord_accuracy(requested: Sequence[tuple[str, float]], duration_s: float, extracted: Any,
                   metric: str = "majmin") -> float:
    """mir_eval ``metric`` of the ``extracted`` timeline vs ``requested`` changes, duration-weighted
    over ``[first requested start, duration_s]`` (NaN if the metric covers none of it)."""
    from stages.chords.evaluate import score_track, weighted

    return weighted([score_track(requested_segments(requested, duration_s), extracted)[metric]])


def frame_iou(predicted: np.ndarray, requested: np.ndarray, no_chord: int = NO_CHORD_INDEX) -> float:
    """Mean over the chord classes (``no_chord`` excluded) present in either (N,) index sequence of
    intersection / union frames; NaN when neither has a chord."""
    predicted, requested = np.asarray(predicted), np.asarray(requested)
    if predicted.shape != requested.shape:
        raise ValueError(f"frame sequences differ in shape: {predicted.shape} vs {requested.shape}")
    classes = np.setdiff1d(np.union1d(predicted, requested), [no_chord])
    if classes.size == 0:
        return math.nan
    ious = [np.count_nonzero((predicted == c) & (requested == c)) / np.count_nonzero((predicted == c) | (requested == c))
            for c in classes]
    return float(np.mean(ious))


def requested_melody_index(matrix: np.ndarray, n_frames: int, frame_rate: float, matrix_rate: float) -> np.ndarray:
    """(T, 53) requested matrix at ``matrix_rate`` -> (n_frames,) argmax semitone at ``frame_rate``
    (frame k reads the matrix row under its centre), -1 where the row is all zero or past the end."""
    from stages.melody.constants import UNVOICED_INDEX
    from stages.melody.jasco import melody_index

    rows = np.floor((np.arange(n_frames) + 0.5) / frame_rate * matrix_rate).astype(np.int64)
    inside = rows < matrix.shape[0]
    index = np.full(n_frames, UNVOICED_INDEX, dtype=np.int16)
    index[inside] = melody_index(np.asarray(matrix, dtype=np.float32)[rows[inside]])
    return index


def melody_accuracy(predicted: np.ndarray, requested: np.ndarray) -> tuple[float, float, int]:
    """(exact semitone accuracy, pitch-class accuracy, voiced frames) over the frames where the
    (N,) ``requested`` index is voiced; NaN accuracies when none is."""
    voiced = requested >= 0
    n = int(np.count_nonzero(voiced))
    if n == 0:
        return math.nan, math.nan, 0
    pred, req = predicted[voiced].astype(np.int64), requested[voiced].astype(np.int64)
    heard = pred >= 0
    exact = np.count_nonzero(heard & (pred == req)) / n
    pitch_class = np.count_nonzero(heard & ((pred - req) % SEMITONES_PER_OCTAVE == 0)) / n
    return float(exact), float(pitch_class), n


def onset_f1(reference: np.ndarray, estimated: np.ndarray, tolerance_s: float = ONSET_WINDOW_S) -> float:
    """mir_eval onset F-measure; NaN with no reference onset, 0 with no estimated one."""
    import mir_eval

    if len(reference) == 0:
        return math.nan
    if len(estimated) == 0:
        return 0.0
    return float(mir_eval.onset.f_measure(np.sort(reference), np.sort(estimated), window=tolerance_s)[0])


def no_chord_share(timeline: Sequence[tuple[str, float, float]]) -> float:
    """Share of a (label, start, end) timeline's duration labelled ``N`` (NaN when it lasts nothing)."""
    total = sum(end - start for _, start, end in timeline)
    silent = sum(end - start for label, start, end in timeline if label == "N")
    return silent / total if total > 0 else math.nan


def chance_partners(clips: Sequence[ClipRequest], key: Callable[[ClipRequest], Any]) -> dict[str, str | None]:
    """For each clip whose ``key`` is not None: the next clip of its group (report order, cyclic)
    with a non-None, different key; None when the group has no such clip."""
    partners: dict[str, str | None] = {}
    by_group: dict[str, list[ClipRequest]] = {}
    for clip in clips:
        if key(clip) is not None:
            by_group.setdefault(clip.group, []).append(clip)
    for members in by_group.values():
        for i, clip in enumerate(members):
            others = members[i + 1:] + members[:i]
            partners[clip.id] = next((o.id for o in others if key(o) != key(clip)), None)
    return partners


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Per group, per score present in at least one row: mean, std (population) and n of the
    finite values."""
    columns = [name for score in SCORES for name in (score, f"{score}_chance")] + list(DESCRIPTIVE)
    groups: dict[str, dict[str, dict[str, float | int]]] = {}
    for group in sorted({row["group"] for row in rows}):
        stats = {}
        for column in columns:
            values = [row[column] for row in rows if row["group"] == group and _finite(row.get(column))]
            if values:
                stats[column] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
        groups[group] = stats
    return groups


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def column_judges(analysers: Any, judges: bool) -> dict[str, dict[str, str]]:
    """Per score column: who heard it (the stage, or the independent judge with its package and version)."""
    stages = {"chords": {"name": "chordino (chords stage)", "package": "chord-extractor",
                         "model": "NNLS-Chroma/Chordino vamp plugin: made the training chord conditions"},
              "melody": {"name": f"deepsalience {analysers.melody.config.model} (melody stage)", "package": "chordflow",
                         "model": "DeepSalience port: made the training melody conditions"},
              "drums": {"name": f"{analysers.drums.config.separator} separation + onsets (drums stage)",
                        "package": "chordflow", "model": "the drums stage's separator and onset detector"}}
    out = {}
    for column, who in COLUMN_JUDGES.items():
        kind, role = who.split(":")
        if kind == "stage":
            out[column] = stages[role]
        elif judges:
            out[column] = analysers.judges.identity(role).as_dict()
    return out


# ----------------------------------------------------------------------------- the whole report
def _chord_scores(clip: ClipRequest, analysis: Any, request: ClipRequest, analysers: Any) -> dict[str, float]:
    from stages.chords.frames import timeline_to_frames

    if analysis.timeline is None or not request.chords:
        return {}
    wanted = timeline_to_frames(request.chords, len(analysis.chord_frames), analysers.chords.vocabulary,
                                analysers.chords.config.frame_rate)
    return {"chord_accuracy": chord_accuracy(request.chords, clip.duration_s, analysis.timeline,
                                             analysers.config.chord_metric),
            "chord_iou": frame_iou(analysis.chord_frames, wanted)}


def _melody_scores(clip: ClipRequest, analysis: Any, request: ClipRequest, analysers: Any) -> dict[str, float]:
    if analysis.melody_index is None or request.melody is None:
        return {}
    wanted = requested_melody_index(analysers.melody_request(request.melody), len(analysis.melody_index),
                                    analysers.melody.config.frame_rate, request.melody_frame_rate)
    exact, pitch_class, _ = melody_accuracy(analysis.melody_index, wanted)
    return {"melody_accuracy": exact, "melody_pitch_class_accuracy": pitch_class}


def _drum_scores(clip: ClipRequest, analysis: Any, request: ClipRequest, analysers: Any) -> dict[str, float]:
    if analysis.onsets is None or request.drums is None:
        return {}
    # The reference may run longer than the clip (a whole track's stem): only its clip span counts.
    reference = analysers.reference_onsets(request.drums)
    return {"onset_f1": onset_f1(reference[reference < clip.duration_s], analysis.onsets,
                                 analysers.config.onset_tolerance_s)}


def _judged_chord_scores(clip: ClipRequest, analysis: Any, request: ClipRequest, analysers: Any) -> dict[str, float]:
    judged = analysis.judged
    if judged is None or judged.timeline is None or not request.chords:
        return {}
    return {"chord_accuracy_cnn": chord_accuracy(request.chords, clip.duration_s, judged.timeline,
                                                 analysers.config.chord_metric)}


def _judged_melody_scores(clip: ClipRequest, analysis: Any, request: ClipRequest, analysers: Any) -> dict[str, float]:
    judged = analysis.judged
    if judged is None or judged.melody_index is None or request.melody is None:
        return {}
    wanted = requested_melody_index(analysers.melody_request(request.melody), len(judged.melody_index),
                                    analysers.melody.config.frame_rate, request.melody_frame_rate)
    exact, pitch_class, _ = melody_accuracy(judged.melody_index, wanted)
    return {"melody_accuracy_crepe": exact, "melody_pitch_class_accuracy_crepe": pitch_class}


#: (name, control, function scoring a clip's extraction against a request's control); the chance
#: pairing is per control.
SCORERS: tuple[tuple[str, str, Callable[..., dict[str, float]]], ...] = (
    ("chords", "chords", _chord_scores), ("melody", "melody", _melody_scores), ("drums", "drums", _drum_scores),
    ("judge_chords", "chords", _judged_chord_scores), ("judge_melody", "melody", _judged_melody_scores))


def _chance_keys(analysers: Any) -> dict[str, Callable[[ClipRequest], Any]]:
    """What makes two requests "different" for the chance pairing, per control."""

    def melody(clip: ClipRequest) -> Any:
        if clip.melody is None:
            return None
        try:
            return np.argmax(analysers.melody_request(clip.melody), axis=1).tobytes()
        except (OSError, ValueError):  # reported by the clip's own scoring
            return None

    return {"chords": lambda clip: clip.chords, "melody": melody,
            "drums": lambda clip: None if clip.drums is None else clip.drums.resolve()}


def clip_row(clip: ClipRequest, analysis: Any, partners: Mapping[str, Mapping[str, str | None]],
             by_id: Mapping[str, ClipRequest], analysers: Any) -> dict[str, Any]:
    """One per-clip row: own scores, chance scores (against the partner's request), what was
    heard, and errors (an unreadable request file fails that score alone)."""
    row: dict[str, Any] = {"id": clip.id, "group": clip.group, "wav": str(clip.wav), "conditions": clip.conditions,
                           "duration_s": analysis.duration_s, "analysis_seconds": round(analysis.seconds, 3)}
    errors = dict(analysis.errors)
    chance_clips: dict[str, str] = {}
    for scorer_name, control, scorer in SCORERS:
        partner = partners.get(control, {}).get(clip.id)
        requests = [("", clip)] + ([("_chance", by_id[partner])] if partner else [])
        for suffix, request in requests:
            try:
                row.update({f"{name}{suffix}": value for name, value in scorer(clip, analysis, request, analysers).items()})
            except Exception as exc:  # e.g. an unreadable melody matrix or reference drums file
                errors[f"score_{scorer_name}{suffix}"] = f"{type(exc).__name__}: {exc}"
        if partner:
            chance_clips[control] = partner
    row["chance_clips"] = chance_clips
    if analysis.chord_frames is not None and len(analysis.chord_frames):
        row["no_chord_fraction"] = float(np.mean(analysis.chord_frames == NO_CHORD_INDEX))
    judged = analysis.judged
    if judged is not None and judged.timeline:
        row["no_chord_fraction_cnn"] = no_chord_share(judged.timeline)
    if judged is not None and judged.tonal_energy_fraction is not None:
        row["tonal_energy_fraction"] = judged.tonal_energy_fraction
    row["extracted_chords"] = [list(s) for s in analysis.timeline] if analysis.timeline is not None else None
    row["judged_chords"] = [list(s) for s in judged.timeline] if judged is not None and judged.timeline else None
    row["errors"] = errors
    return row


def evaluate_report(report_path: str | Path, params: Mapping[str, Any] | str | Path | None = None,
                    reference_manifest: str | Path | None = None, reference_limit: int | None = None,
                    progress: bool = True, executor: Executor | None = None,
                    reference_memo: dict | None = None,
                    heldout: HeldoutReal | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every clip of a generation report. Returns ``(metrics, per-clip rows)``; ``metrics``
    holds the per-group aggregates, the Fréchet section, skipped analysers, errors and timing.
    ``executor`` (:mod:`pipeline.executors`; None: this process) runs the clips' analyses and the
    reference clips; the figures are the same on every executor. ``reference_memo``: a dict shared by
    the scorings of one run, so the reference clips are measured once. ``heldout``: the held-out
    requests' real tracks, the same-size Fréchet yardstick (left out of the reference).
    Raises :class:`model.evaluation.report.ReportError` / ``ConfigError`` for an unusable report or params."""
    from model.evaluation.embedding import handmade_frechet
    from model.evaluation.realism import realism_section
    from model.evaluation.report import read_report
    from model.evaluation.workers import analyse_clips, analysers_for, reference_measure, set_up_for
    from pipeline.executors import SerialExecutor

    started = time.perf_counter()
    config, stages = eval_settings(params)
    report = read_report(report_path)
    executor = executor or SerialExecutor()
    analysers = analysers_for(stages, config)
    judges = config.judges.enabled
    set_up_for(analysers, report.clips, reference_manifest is not None, judges)
    analyses = analyse_clips(report.clips, stages, config, reference_manifest is not None, judges, executor, progress)
    by_id = {clip.id: clip for clip in report.clips}
    partners = {control: chance_partners(report.clips, key) for control, key in _chance_keys(analysers).items()}
    rows = [clip_row(clip, analyses[clip.id], partners, by_id, analysers) for clip in report.clips]
    seconds = [a.seconds for a in analyses.values() if a.errors.get("audio") is None]
    audio = [a.duration_s for a in analyses.values() if math.isfinite(a.duration_s)]
    errors = {row["id"]: row["errors"] for row in rows if row["errors"]}
    errors.update({name: {"report": reason} for name, reason in report.problems})
    metrics: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "report": str(report.path),
        "clips": len(report.clips) + len(report.problems),  # entries in the report
        "clips_with_errors": len(errors),
        "chord_metric": config.chord_metric,
        "onset_tolerance_s": config.onset_tolerance_s,
        "groups": summarize(rows),
        "skipped": {**analysers.skipped, **({f"judge_{role}": reason for role, reason in analysers.judges.skipped.items()}
                                            if judges else {})},
        "errors": errors,
    }
    if reference_manifest is None:
        metrics["frechet"] = {"skipped": "no reference manifest given (--reference-manifest)"}
    else:
        limit = config.reference_limit if reference_limit is None else reference_limit
        generated = {clip.id: analyses[clip.id].embedding for clip in report.clips}
        metrics["frechet"] = handmade_frechet(generated, {c.id: c.group for c in report.clips}, reference_manifest,
                                              config.frechet, limit, progress, executor, reference_memo,
                                              config.threads, heldout)
        if judges:
            embedded = {clip.id: getattr(analyses[clip.id].judged, "embedding", None) for clip in report.clips}
            metrics["realism"] = realism_section(embedded, {c.id: c.group for c in report.clips}, reference_manifest,
                                                 analysers.judges, limit, progress, executor,
                                                 lambda role: reference_measure(stages, config, role), reference_memo,
                                                 heldout)
    metrics["judges"] = column_judges(analysers, judges)
    metrics["timing"] = {
        "seconds": round(time.perf_counter() - started, 3),
        "analysis_seconds_per_clip": round(float(np.mean(seconds)), 3) if seconds else None,
        "analysis_seconds_per_audio_second": round(sum(seconds) / sum(audio), 4) if audio and sum(audio) > 0 else None,
    }
    return metrics, rows
