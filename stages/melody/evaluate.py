"""`chordflow melody eval`: melody accuracy against the demo corpus truth, with mir_eval.

Scored per clip, then averaged over clips:

* each model of ``melody_eval.models`` (melody1, melody2): single-f0 per salience frame = the
  argmax bin, unvoiced where its salience is below ``voicing_threshold`` (reported as the negative
  of that pitch, as the original ``get_singlef0`` does, so raw pitch accuracy counts every frame);
* ``condition``: the stage's stored 53-semitone ``melody_index`` (if ``--features`` is given), at
  50 fps, with unvoiced frames as 0 Hz.

Truth is the corpus melody f0 (Hz, 100 fps, 0 = unvoiced) of ``truth/<clip_id>.json``, matched to a
manifest track by the audio file name.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from stages.melody.config import MelodyConfig, MelodyEvalConfig

if TYPE_CHECKING:
    from pipeline.executors import Executor

log = logging.getLogger(__name__)

#: mir_eval metric name -> our key.
METRIC_KEYS: dict[str, str] = {
    "Voicing Recall": "voicing_recall",
    "Voicing False Alarm": "voicing_false_alarm",
    "Raw Pitch Accuracy": "raw_pitch_accuracy",
    "Raw Chroma Accuracy": "raw_chroma_accuracy",
    "Overall Accuracy": "overall_accuracy",
}


def read_truth_melody(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(times, f0)`` of a corpus truth file: (N,) seconds and (N,) Hz with 0 = unvoiced."""
    try:
        truth = json.loads(Path(path).read_text(encoding="utf-8"))
        f0 = np.asarray(truth["melody"], dtype=np.float64)
        rate = float(truth["melody_frame_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a corpus truth file with melody and melody_frame_rate ({exc})") from exc
    return np.arange(f0.size) / rate, f0


def single_f0(salience: np.ndarray, voicing_threshold: float) -> np.ndarray:
    """(360, T) salience -> (T,) f0 in Hz of the argmax bin, negative where unvoiced."""
    from stages.melody.hcqt import bin_frequencies

    peak = np.argmax(salience, axis=0)
    f0 = bin_frequencies()[peak]
    voiced = salience[peak, np.arange(salience.shape[1])] >= voicing_threshold
    return np.where(voiced, f0, -f0)


def score(ref_times: np.ndarray, ref_f0: np.ndarray, est_times: np.ndarray, est_f0: np.ndarray) -> dict[str, float]:
    """mir_eval.melody metrics of one clip under our key names."""
    import mir_eval

    metrics = mir_eval.melody.evaluate(ref_times, ref_f0, est_times, est_f0)
    return {ours: float(metrics[theirs]) for theirs, ours in METRIC_KEYS.items()}


def condition_f0(index: np.ndarray, frame_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Stored melody index -> ``(times, f0)`` with 0 Hz where unvoiced."""
    from stages.melody.jasco import condition_frame_times, index_to_midi, midi_to_hz

    midi = index_to_midi(np.asarray(index))
    f0 = np.where(np.isnan(midi), 0.0, midi_to_hz(np.nan_to_num(midi)))
    return condition_frame_times(len(index), frame_rate), f0


def manifest_clips(manifest: str | Path, truth_dir: str | Path, limit: int = 0) -> list[tuple[str, str, Path]]:
    """``(track_id, audio path, truth path)`` for manifest tracks that have a truth file."""
    from pipeline.manifest import read_manifest

    rows = read_manifest(manifest).select(["track_id", "path"]).to_pylist()
    clips = []
    for row in rows:
        truth = Path(truth_dir) / f"{Path(row['path']).stem}.json"
        if truth.is_file():
            clips.append((row["track_id"], row["path"], truth))
        else:
            log.warning("%s: no truth file %s, not scored", row["path"], truth)
    return clips[:limit] if limit else clips


#: Salience models loaded in this process, by (model name, stage config): a worker of the executor
#: loads each once and scores many clips with it.
_MODELS: dict[tuple[str, MelodyConfig], Any] = {}


def _salience_model(name: str, stage: MelodyConfig) -> Any:
    from pipeline.allocator import retain_freed_memory
    from stages.melody.backends import load_salience_model

    key = (name, stage)
    if key not in _MODELS:
        retain_freed_memory()  # as the stage's workers: no page faults for every window's activations
        # melody.threads as for the stage: another count may change the salience in its last bits
        _MODELS[key] = load_salience_model(name, stage.backend, stage.weights_dir, stage.threads, stage.device,
                                           stage.precision)
    return _MODELS[key]


def score_models(audio_path: str, truth_path: Path, stage: MelodyConfig,
                 eval_cfg: MelodyEvalConfig) -> dict[str, dict[str, float]]:
    """Metrics of every model of ``eval_cfg.models`` on one clip (runs in an executor worker)."""
    from pipeline.audio import load_audio
    from pipeline.threads import pinned_threads
    from stages.melody.chunking import predict_salience
    from stages.melody.constants import SAMPLE_RATE
    from stages.melody.hcqt import compute_hcqt, frame_times

    ref_times, ref_f0 = read_truth_melody(truth_path)
    samples, sr = load_audio(audio_path, sample_rate=SAMPLE_RATE, channels=1)
    with pinned_threads(stage.threads):  # the HCQT's BLAS products too, as in the stage
        hcqt = compute_hcqt(samples[0], sr, stage.hcqt)
    times = frame_times(hcqt.shape[-1])
    scores = {}
    for name in eval_cfg.models:
        salience = predict_salience(_salience_model(name, stage), hcqt, stage.chunk_frames, stage.batch_size,
                                    stage.overlap_frames)
        scores[name] = score(ref_times, ref_f0, times, single_f0(salience, eval_cfg.voicing_threshold))
    return scores


def evaluate_corpus(clips: Iterable[tuple[str, str, Path]], stage: MelodyConfig, eval_cfg: MelodyEvalConfig,
                    features_dir: str | Path | None = None, progress: bool = True,
                    executor: Executor | None = None) -> dict[str, Any]:
    """Mean metrics per model (and for the stored condition) over ``clips``; the clips' salience is
    computed on ``executor`` (None: in this process), the same figures whichever runs it."""
    from pipeline.executors import SerialExecutor, run_all

    clips = list(clips)
    if not clips:
        raise ValueError("no clip with a truth file to evaluate")
    # loaded here first, so that missing weights fail before any worker starts
    for name in eval_cfg.models:
        _salience_model(name, stage)
    futures = run_all(executor or SerialExecutor(), score_models,
                      [(audio_path, truth_path, stage, eval_cfg) for _, audio_path, truth_path in clips],
                      "melody eval", progress)
    per_clip: dict[str, list[dict[str, float]]] = {name: [] for name in eval_cfg.models}
    for future in futures:  # in clip order, so the means add up in the same order on every executor
        for name, metrics in future.result().items():
            per_clip[name].append(metrics)
    if features_dir is not None:
        from pipeline.reader import StageStore

        store = StageStore(features_dir)
        per_clip["condition"] = []
        for track_id, _, truth_path in clips:
            if track_id in store:
                ref_times, ref_f0 = read_truth_melody(truth_path)
                est_times, est_f0 = condition_f0(store.get(track_id)["melody_index"], store.frame_rate)
                per_clip["condition"].append(score(ref_times, ref_f0, est_times, est_f0))
            else:
                log.warning("%s: not in %s (failed or not extracted), condition not scored", track_id, features_dir)
    summary: dict[str, Any] = {"clips": len(clips)}
    for name, rows in per_clip.items():
        if rows:
            summary[name] = {key: float(np.mean([r[key] for r in rows])) for key in METRIC_KEYS.values()}
            summary[name]["clips"] = len(rows)
    return summary
