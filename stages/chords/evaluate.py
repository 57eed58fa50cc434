"""``chordflow chords eval``: mir_eval chord metrics of extracted timelines against corpus truth.

Each extracted track is matched to ``TRUTH_DIR/<audio file stem>.json`` (the demo corpus layout:
``audio/clip_00003.flac`` -> ``truth/clip_00003.json``). Labels are converted to Harte syntax
(:func:`stages.chords.labels.to_harte`); the estimate is trimmed/padded with ``N`` to the reference
span as in ``mir_eval.chord.evaluate``, and every metric is a duration-weighted accuracy. The
corpus figure pools all tracks (weighted by duration, the usual WCSR); the per-track mean and the
worst track are reported too. ``frame_index`` is the exact agreement of the stored frame-level
indices with the truth's indices made by the same :func:`timeline_to_frames`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_write_text
from stages.chords.frames import as_segments, timeline_to_frames
from stages.chords.labels import to_harte
from stages.chords.vocab import Vocabulary

#: mir_eval comparison functions reported, in table order.
METRICS: tuple[str, ...] = ("root", "majmin", "thirds", "mirex")
FRAME_METRIC = "frame_index"


@dataclasses.dataclass
class TrackScores:
    clip_id: str
    track_id: str
    duration_s: float
    scores: dict[str, float]
    #: per metric: (comparisons, durations) of the merged intervals, for corpus pooling
    parts: dict[str, tuple[np.ndarray, np.ndarray]]


def harte_intervals(timeline: Any) -> tuple[np.ndarray, list[str]]:
    """(S, 2) intervals and Harte labels of a timeline (any form :func:`as_segments` reads)."""
    segments = [s for s in as_segments(timeline) if s[2] > s[1]]
    intervals = np.array([[start, end] for _, start, end in segments], dtype=np.float64).reshape(-1, 2)
    return intervals, [to_harte(label) for label, _, _ in segments]


def score_track(reference: Any, estimate: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric, mir_eval's comparisons and the durations of the merged intervals."""
    import mir_eval

    ref_intervals, ref_labels = harte_intervals(reference)
    est_intervals, est_labels = harte_intervals(estimate)
    if len(ref_labels) == 0:
        raise ValueError("reference timeline is empty")
    est_intervals, est_labels = mir_eval.util.adjust_intervals(
        est_intervals, est_labels, ref_intervals.min(), ref_intervals.max(),
        mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD)
    intervals, ref, est = mir_eval.util.merge_labeled_intervals(ref_intervals, ref_labels, est_intervals, est_labels)
    durations = mir_eval.util.intervals_to_durations(intervals)
    return {name: (np.asarray(getattr(mir_eval.chord, name)(ref, est), dtype=np.float64), durations) for name in METRICS}


def weighted(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Duration-weighted accuracy over pooled (comparisons, durations); comparisons < 0 are excluded
    (mir_eval's convention for reference chords a metric does not cover). NaN if nothing is covered."""
    comparisons = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0)
    durations = np.concatenate([d for _, d in parts]) if parts else np.zeros(0)
    valid = comparisons >= 0
    total = durations[valid].sum()
    return float(np.sum(comparisons[valid] * durations[valid]) / total) if total > 0 else math.nan


def evaluate_store(features_dir: str | Path, truth_dir: str | Path, vocabulary: Vocabulary | None = None) -> dict[str, Any]:
    """Score every track of a chords shard folder that has a truth file. Returns the metrics dict
    written by the CLI (corpus figures at the top level)."""
    from pipeline.reader import StageStore

    store = StageStore(features_dir)
    if store.stage != "chords":
        raise ValueError(f"{features_dir}: holds stage {store.stage!r}, not chords")
    frame_rate = store.frame_rate
    vocabulary = vocabulary or Vocabulary.load(store.info.params.get("vocabulary", "jasco"))
    truth_dir = Path(truth_dir)
    tracks: list[TrackScores] = []
    missing: list[str] = []
    frame_hits = frame_total = 0
    for row in store:
        clip_id = Path(row["path"]).stem
        truth_path = truth_dir / f"{clip_id}.json"
        if not truth_path.is_file():
            missing.append(row["track_id"])
            continue
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        parts = score_track(truth["chords"], row["timeline"])
        predicted = np.asarray(row["chord_index"])
        expected = timeline_to_frames(truth["chords"], len(predicted), vocabulary, frame_rate)
        frame_hits += int(np.count_nonzero(predicted == expected))
        frame_total += len(predicted)
        scores = {name: weighted([parts[name]]) for name in METRICS}
        scores[FRAME_METRIC] = float(np.mean(predicted == expected)) if len(predicted) else math.nan
        tracks.append(TrackScores(clip_id, row["track_id"], float(row["duration_s"]), scores, parts))
    if not tracks:
        raise ValueError(f"{features_dir}: no extracted track has a truth file in {truth_dir}")
    result: dict[str, Any] = {name: weighted([t.parts[name] for t in tracks]) for name in METRICS}
    result[FRAME_METRIC] = frame_hits / frame_total if frame_total else math.nan
    names = (*METRICS, FRAME_METRIC)
    result["track_mean"] = {n: float(np.nanmean([t.scores[n] for t in tracks])) for n in names}
    worst = {n: min(tracks, key=lambda t: (_nan_high(t.scores[n]), t.clip_id)) for n in names}
    result["track_min"] = {n: worst[n].scores[n] for n in names}
    result["worst_clip"] = {n: worst[n].clip_id for n in names}
    result["tracks"] = len(tracks)
    result["audio_seconds"] = round(sum(t.duration_s for t in tracks), 3)
    result["tracks_without_truth"] = len(missing)
    result["extraction_errors"] = store.errors().num_rows
    result["vocabulary"] = vocabulary.name
    result["frame_rate"] = frame_rate
    return result


def _nan_high(value: float) -> float:
    return math.inf if math.isnan(value) else value


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of the metrics dict."""
    lines = [
        f"chords eval: {result['tracks']} tracks, {result['audio_seconds']:.1f} s of audio "
        f"({result['tracks_without_truth']} without truth, {result['extraction_errors']} extraction errors)",
        "",
        "| metric | corpus (duration-weighted) | track mean | worst track |",
        "|---|---|---|---|",
    ]
    for name in (*METRICS, FRAME_METRIC):
        lines.append(f"| {name} | {result[name]:.4f} | {result['track_mean'][name]:.4f} | "
                     f"{result['track_min'][name]:.4f} ({result['worst_clip'][name]}) |")
    return "\n".join(lines)


def write_metrics(result: dict[str, Any], out: str | Path) -> Path:
    """Write the metrics JSON atomically (NaN -> null, so DVC can read it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(result), parse_constant=lambda _: None)
    atomic_write_text(out, json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return out
