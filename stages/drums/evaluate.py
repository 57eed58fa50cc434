"""Quality of the drum stems on a rendered corpus that has the true drum track of every clip.

Per clip with drums: onset F1 / precision / recall (mir_eval.onset, 50 ms window) of onsets
detected on the separated stem against the true drum onsets, and SI-SDR of the stem against the
true drum stem (both mono at the stem rate; the corpus renders stems sample-aligned with the mix).
The same two numbers for the unprocessed mix are the baseline, so SI-SDR improvement is reported.
Clips without drums have no onsets to find and a silent reference (SI-SDR undefined): for them
the stem's energy relative to the mix (dB; lower is better) and the onsets per minute falsely
detected on it are reported instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np
from tqdm import tqdm

from pipeline.audio import AudioError, load_audio
from pipeline.corpus.build import INDEX_NAME
from pipeline.reader import StageStore
from stages.drums.config import OnsetConfig
from stages.drums.constants import ENERGY_EPS, ONSET_WINDOW_S, TRUTH_ONSET_MERGE_S
from stages.drums.onsets import detect_onsets
from stages.drums.stems import STEM_COLUMN, read_stem

log = logging.getLogger(__name__)

#: SI-SDR is reported within +-this many dB (an all-zero estimate would otherwise be -inf).
SI_SDR_LIMIT_DB: float = 120.0


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR (dB) of 1-D ``estimate`` against ``reference`` (Le Roux et al. 2019).

    Both are made zero-mean; the estimate is split into its projection on the reference (target)
    and the rest (noise). The result is clipped to +-SI_SDR_LIMIT_DB (a perfect estimate, an
    all-zero one or a silent reference would otherwise be infinite or undefined).
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: {estimate.shape} vs {reference.shape}")
    est = estimate.astype(np.float64) - estimate.mean()
    ref = reference.astype(np.float64) - reference.mean()
    ref_energy = float(ref @ ref)
    target = (float(est @ ref) / ref_energy) * ref if ref_energy > 0 else np.zeros_like(ref)
    target_energy, noise_energy = float(target @ target), float(np.sum((est - target) ** 2))
    if target_energy == 0.0:
        return -SI_SDR_LIMIT_DB
    if noise_energy == 0.0:
        return SI_SDR_LIMIT_DB
    return float(np.clip(10.0 * np.log10(target_energy / noise_energy), -SI_SDR_LIMIT_DB, SI_SDR_LIMIT_DB))


def merge_onsets(times: np.ndarray, tolerance: float = TRUTH_ONSET_MERGE_S) -> np.ndarray:
    """Sorted onset times with those closer than ``tolerance`` to the previous kept one dropped."""
    kept: list[float] = []
    for t in np.sort(np.asarray(times, dtype=np.float64)):
        if not kept or t - kept[-1] >= tolerance:
            kept.append(float(t))
    return np.asarray(kept)


def onset_scores(reference: np.ndarray, estimated: np.ndarray) -> tuple[float, float, float]:
    """(F1, precision, recall) with a 50 ms window; empty sides score 0 (mir_eval's convention)."""
    if len(reference) == 0 or len(estimated) == 0:
        return 0.0, 0.0, 0.0
    return tuple(float(x) for x in mir_eval.onset.f_measure(reference, estimated, window=ONSET_WINDOW_S))


def _energy_db(x: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + ENERGY_EPS))


@dataclasses.dataclass(frozen=True)
class ClipScore:
    clip_id: str
    track_id: str
    has_drums: bool
    seconds: float
    stem_to_mix_db: float
    onsets_per_minute: float
    onset_f1: float | None = None
    onset_precision: float | None = None
    onset_recall: float | None = None
    onset_f1_mix: float | None = None
    si_sdr_db: float | None = None
    si_sdr_mix_db: float | None = None


def read_index(corpus_root: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(corpus_root) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no corpus index (render the corpus first)")
    return {entry["clip_id"]: entry for entry in map(json.loads, path.read_text().splitlines()) if entry}


def score_clip(stem: np.ndarray, sr: int, entry: dict[str, Any], corpus_root: Path, track_id: str,
               onset: OnsetConfig) -> ClipScore:
    """Score one separated stem (C, N) at ``sr`` against the corpus entry's truth."""
    mix, _ = load_audio(corpus_root / entry["audio"], sample_rate=sr, channels=1)
    estimate = stem.mean(axis=0)
    n = min(estimate.shape[0], mix.shape[1])
    estimate, mix = estimate[:n], mix[0, :n]
    detected = detect_onsets(estimate[None], sr, onset)
    minutes = n / sr / 60.0
    common = dict(clip_id=entry["clip_id"], track_id=track_id, has_drums=bool(entry["has_drums"]), seconds=n / sr,
                  stem_to_mix_db=_energy_db(estimate) - _energy_db(mix),
                  onsets_per_minute=len(detected) / minutes if minutes > 0 else 0.0)
    if not entry["has_drums"]:
        return ClipScore(**common)
    truth = json.loads((corpus_root / entry["truth"]).read_text())
    reference_onsets = merge_onsets([o["time"] for o in truth["drum_onsets"]])
    true_stem, _ = load_audio(corpus_root / entry["drum_stem"], sample_rate=sr, channels=1)
    m = min(n, true_stem.shape[1])
    f1, precision, recall = onset_scores(reference_onsets, detected)
    f1_mix = onset_scores(reference_onsets, detect_onsets(mix[None], sr, onset))[0]
    return ClipScore(**common, onset_f1=f1, onset_precision=precision, onset_recall=recall, onset_f1_mix=f1_mix,
                     si_sdr_db=si_sdr(estimate[:m], true_stem[0, :m]), si_sdr_mix_db=si_sdr(mix[:m], true_stem[0, :m]))


@dataclasses.dataclass(frozen=True)
class Evaluation:
    scores: list[ClipScore]
    separator: str  # label(s) of the separator(s) that made the stems
    failed: list[str]  # clips that could not be scored (unreadable stem or truth)


def evaluate_stems(features_dir: str | Path, corpus_root: str | Path, onset: OnsetConfig = OnsetConfig(),
                   progress: bool = True) -> Evaluation:
    """Score every track of a drums stage folder whose file is a clip of the corpus.

    Tracks map to clips by file stem (``audio/clip_00012.wav`` -> ``clip_00012``).
    """
    store = StageStore(features_dir)
    if store.stage != "drums":
        raise ValueError(f"{features_dir}: made by stage {store.stage!r}, not drums")
    corpus_root = Path(corpus_root)
    index = read_index(corpus_root)
    scores, labels, unmatched, failed = [], set(), [], []
    for row in tqdm(list(store), unit="track", desc="drums eval", disable=not progress):
        clip_id = Path(row["path"]).stem
        if clip_id not in index:
            unmatched.append(row["path"])
            continue
        labels.add(row["separator"])
        try:
            stem, sr = read_stem(features_dir, row[STEM_COLUMN])
            scores.append(score_clip(stem, sr, index[clip_id], corpus_root, row["track_id"], onset))
        except (AudioError, OSError, ValueError, KeyError) as exc:  # one unreadable clip is left out, and counted
            failed.append(clip_id)
            log.warning("drums eval: %s left out: %s", clip_id, exc)
    if unmatched:
        log.warning("%d tracks are not clips of %s (e.g. %s); left out", len(unmatched), corpus_root, unmatched[0])
    if not scores:
        raise ValueError(f"{features_dir}: no track matches a readable clip of {corpus_root}")
    return Evaluation(scores, ",".join(sorted(labels)), failed)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(evaluation: Evaluation) -> dict[str, Any]:
    """Flat DVC metrics: means over clips with drums, and leakage figures over clips without."""
    scores = evaluation.scores
    drums = [s for s in scores if s.has_drums]
    drumless = [s for s in scores if not s.has_drums]
    si = [s.si_sdr_db for s in drums]
    si_mix = [s.si_sdr_mix_db for s in drums]
    metrics = {
        "separator": evaluation.separator,
        "clips": len(scores),
        "clips_failed": len(evaluation.failed),
        "clips_with_drums": len(drums),
        "clips_without_drums": len(drumless),
        "onset_window_s": ONSET_WINDOW_S,
        "onset_f1": _mean([s.onset_f1 for s in drums]),
        "onset_precision": _mean([s.onset_precision for s in drums]),
        "onset_recall": _mean([s.onset_recall for s in drums]),
        "onset_f1_mix": _mean([s.onset_f1_mix for s in drums]),
        "si_sdr_db": _mean(si),
        "si_sdr_db_median": float(np.median(si)) if si else None,
        "si_sdr_mix_db": _mean(si_mix),
        "si_sdr_improvement_db": _mean([a - b for a, b in zip(si, si_mix)]),
        "drumless_stem_to_mix_db": _mean([s.stem_to_mix_db for s in drumless]),
        "drumless_onsets_per_minute": _mean([s.onsets_per_minute for s in drumless]),
    }
    return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in metrics.items()}
