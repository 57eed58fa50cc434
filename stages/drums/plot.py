"""Picture of one separated clip: mix, drum stem with true and detected onsets, onset envelope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import save_png
from pipeline.audio import load_audio
from stages.drums.config import OnsetConfig
from stages.drums.onsets import detect_onsets
from stages.drums.stems import STEM_COLUMN, read_stem

FIGURE_SIZE = (12, 6.5)
DPI = 110


def plot_separation(row: dict[str, Any], features_dir: str | Path, entry: dict[str, Any], corpus_root: str | Path,
                    out: str | Path, frame_rate: float, onset: OnsetConfig = OnsetConfig()) -> Path:
    """Draw one track of a drums stage folder (``row`` from ``StageStore.get``) against its truth;
    ``frame_rate`` is that of the stored onset envelope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpus_root = Path(corpus_root)
    stem, sr = read_stem(features_dir, row[STEM_COLUMN])
    mix, _ = load_audio(corpus_root / entry["audio"], sample_rate=sr, channels=1)
    truth = json.loads((corpus_root / entry["truth"]).read_text())
    time_axis = np.arange(stem.shape[1]) / sr
    envelope = np.asarray(row["onset_envelope"])

    fig, (ax_mix, ax_stem, ax_env) = plt.subplots(3, 1, figsize=FIGURE_SIZE, sharex=True)
    ax_mix.plot(np.arange(mix.shape[1]) / sr, mix[0], lw=0.3, color="0.4")
    ax_mix.set_ylabel("mix")
    ax_mix.set_title(f"{entry['clip_id']}: drum stem by {row['separator']}", fontsize=9)
    ax_stem.plot(time_axis, stem.mean(axis=0), lw=0.3, color="tab:blue")
    for t in sorted({o["time"] for o in truth["drum_onsets"]}):
        ax_stem.axvline(t, color="tab:green", lw=0.6, alpha=0.5)
    detected = detect_onsets(stem, sr, onset)
    ax_stem.plot(detected, np.zeros_like(detected), "rv", markersize=4, label="detected onsets")
    ax_stem.set_ylabel("stem (green: true onsets)")
    ax_stem.legend(loc="upper right", fontsize=8)
    ax_env.plot(np.arange(len(envelope)) / frame_rate, envelope, lw=0.8, color="tab:red")
    ax_env.set_ylabel("onset envelope")
    ax_env.set_xlabel("time (s)")
    fig.tight_layout()
    return save_png(fig, out, dpi=DPI)
