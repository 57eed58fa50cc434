"""``chordflow chords eval``: mir_eval chord metrics of extracted timelines against corpus truth.

Each extracted track is matched to ``TRUTH_DIR/<audio file stem>.json`` (the demo corpus layout:
``audio/clip_00003.flac`` -> ``truth/clip_00003.json``). Labels are converted to Harte syntax
(:func:`music.chords.to_harte`); the estimate is trimmed/padded with ``N`` to the reference
span as in ``mir_eval.chord.evaluate``, and every metric is a duration-weighted accuracy. The
corpus figure pools all tracks (weighted by duration, the usual WCSR); the per-track mean and the
worst track are reported too. ``frame_index`` is the exact agreement of the stored frame-level
indices with the truth's indices made by the same :func:`timeline_to_frames`. ``boundaries`` measures timing: for every
chord change of the truth, the distance to the nearest extracted change (share within one and two
frames, median).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from music.chords import to_harte
from stages.chords.frames import as_segments, timeline_to_frames
from stages.chords.vocab import Vocabulary

#: mir_eval comparison functions reported, in table order.
METRICS: tuple[str, ...] = ("root", "majmin", "thirds", "mirex")
FRAME_METRIC = "frame_index"
#: Boundary errors are reported as shares within this many frames.
BOUNDARY_TOLERANCES_FRAMES: tuple[int, ...] = (1, 2)
# Slack on those tolerances for float error in the stored (0.1 ms-rounded) times.
_TOLERANCE_SLACK_S = 1e-9


@dataclasses.dataclass
class TrackScores:
    clip_id: str
    track_id: str
    duration_s: float
    scores: dict[str, float]
    #: per metric: (comparisons, durations) of the merged intervals, for corpus pooling
    parts: dict[str, tuple[np.ndarray, np.ndarray]]
    #: per truth change: seconds to the nearest extracted change (inf if there is none)
    boundary_errors: np.ndarray


def change_times(timeline: Any) -> np.ndarray:
    """Times where the label changes (track start excluded)."""
    segments = [s for s in as_segments(timeline) if s[2] > s[1]]
    return np.array([b[1] for a, b in zip(segments, segments[1:]) if a[0] != b[0]], dtype=np.float64)


def boundary_errors(reference: Any, estimate: Any) -> np.ndarray:
    """For each change of ``reference``: absolute distance (s) to the nearest change of ``estimate``."""
    truth, found = change_times(reference), change_times(estimate)
    if len(found) == 0:
        return np.full(len(truth), np.inf)
    return np.min(np.abs(truth[:, None] - found[None, :]), axis=1)


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
    from stages.chords.stage import ChordsConfig

    store = StageStore(features_dir)
    if store.stage != "chords":
        raise ValueError(f"{features_dir}: holds stage {store.stage!r}, not chords")
    frame_rate = store.frame_rate
    if vocabulary is None:
        vocabulary = Vocabulary.load(store.config(ChordsConfig).vocabulary)
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
        truth_changes = [(c["label"], c["start"]) for c in truth["chords"]]  # as the stage builds its frames
        expected = timeline_to_frames(truth_changes, len(predicted), vocabulary, frame_rate)
        frame_hits += int(np.count_nonzero(predicted == expected))
        frame_total += len(predicted)
        scores = {name: weighted([parts[name]]) for name in METRICS}
        scores[FRAME_METRIC] = float(np.mean(predicted == expected)) if len(predicted) else math.nan
        errors = boundary_errors(truth["chords"], row["timeline"])
        tracks.append(TrackScores(clip_id, row["track_id"], float(row["duration_s"]), scores, parts, errors))
    if not tracks:
        raise ValueError(f"{features_dir}: no extracted track has a truth file in {truth_dir}")
    result: dict[str, Any] = {name: weighted([t.parts[name] for t in tracks]) for name in METRICS}
    result[FRAME_METRIC] = frame_hits / frame_total if frame_total else math.nan
    names = (*METRICS, FRAME_METRIC)
    result["track_mean"] = {n: float(np.nanmean([t.scores[n] for t in tracks])) for n in names}
    worst = {n: min(tracks, key=lambda t: (_nan_high(t.scores[n]), t.clip_id)) for n in names}
    result["track_min"] = {n: worst[n].scores[n] for n in names}
    result["worst_clip"] = {n: worst[n].clip_id for n in names}
    errors = np.concatenate([t.boundary_errors for t in tracks])
    shares = {f"within_{k}_frame{'s' if k > 1 else ''}": float(np.mean(errors <= k / frame_rate + _TOLERANCE_SLACK_S))
              for k in BOUNDARY_TOLERANCES_FRAMES} if len(errors) else {}
    result["boundaries"] = {"changes": int(len(errors)), **shares,
                            "median_error_s": float(np.median(errors)) if len(errors) else math.nan}
    result["tracks"] = len(tracks)
    result["audio_seconds"] = round(sum(t.duration_s for t in tracks), 3)
    result["tracks_without_truth"] = len(missing)
    result["extraction_errors"] = store.errors().num_rows
    result["unknown_frames"] = int(sum(int(row["unknown_frames"]) for row in store))
    result["vocabulary"] = vocabulary.name
    result["frame_rate"] = frame_rate
    return result


def _nan_high(value: float) -> float:
    return math.inf if math.isnan(value) else value


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of the metrics dict."""
    lines = [
        f"chords eval: {result['tracks']} tracks, {result['audio_seconds']:.1f} s of audio "
        f"({result['tracks_without_truth']} without truth, {result['extraction_errors']} extraction errors, "
        f"{result['unknown_frames']} UNK frames)",
        "",
        "| metric | corpus (duration-weighted) | track mean | worst track |",
        "|---|---|---|---|",
    ]
    for name in (*METRICS, FRAME_METRIC):
        lines.append(f"| {name} | {result[name]:.4f} | {result['track_mean'][name]:.4f} | "
                     f"{result['track_min'][name]:.4f} ({result['worst_clip'][name]}) |")
    b = result["boundaries"]
    shares = ", ".join(f"{v:.1%} {k.replace('_', ' ')}" for k, v in b.items() if k.startswith("within"))
    lines += ["", f"chord changes: {b['changes']} in the truth; nearest extracted change {shares} "
                  f"(1 frame = {1000 / result['frame_rate']:.0f} ms); median error {1000 * b['median_error_s']:.1f} ms"]
    return "\n".join(lines)


