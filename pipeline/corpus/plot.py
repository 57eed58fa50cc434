"""Picture of one clip's truth: chord timeline, melody piano roll (notes + f0) and drum onsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from music.vocabulary import CHORD_NO_CHORD
from pipeline.atomic import save_png
from pipeline.corpus.plan import OUTPUT_DIRS
from pipeline.corpus.truth import read_truth

FIGURE_SIZE = (12, 6.5)
DPI = 110


def find_truth(clip: str, corpus_root: str | Path) -> Path:
    """``clip`` is a truth JSON path or a clip id looked up under ``corpus_root/truth``."""
    direct = Path(clip)
    if direct.suffix == ".json" and direct.is_file():
        return direct
    candidate = Path(corpus_root) / OUTPUT_DIRS["truth"] / f"{clip}.json"
    if not candidate.is_file():
        raise FileNotFoundError(f"{candidate}: no truth sidecar for clip {clip!r}")
    return candidate


def plot_truth(truth: dict[str, Any], out: str | Path) -> Path:
    """Draw the truth of one clip to a PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duration = truth["duration"]
    fig, (ax_chords, ax_melody, ax_drums) = plt.subplots(
        3, 1, figsize=FIGURE_SIZE, sharex=True, gridspec_kw={"height_ratios": [1, 3, 1.6]})
    cmap = plt.get_cmap("tab20")
    labels = sorted({c["label"] for c in truth["chords"]})
    for chord in truth["chords"]:
        colour = "0.9" if chord["label"] == CHORD_NO_CHORD else cmap(labels.index(chord["label"]) % 20)
        ax_chords.axvspan(chord["start"], chord["end"], color=colour, alpha=0.8)
        ax_chords.text((chord["start"] + chord["end"]) / 2, 0.5, chord["label"], ha="center", va="center", fontsize=8)
        ax_melody.axvline(chord["start"], color="0.85", lw=0.8, zorder=0)
    ax_chords.set_yticks([])
    ax_chords.set_title(truth.get("description", truth["clip_id"]), fontsize=9)

    for note in truth["melody_notes"]:
        ax_melody.barh(note["pitch"], note["end"] - note["start"], left=note["start"], height=0.8, color="tab:blue", alpha=0.6)
    f0 = np.asarray(truth["melody"], dtype=float)
    times = np.arange(len(f0)) / truth["melody_frame_rate"]
    with np.errstate(divide="ignore"):
        midi = np.where(f0 > 0, 69 + 12 * np.log2(np.where(f0 > 0, f0, 1.0) / 440.0), np.nan)
    ax_melody.plot(times, midi, color="tab:red", lw=1.0, label="f0 (frames)")
    ax_melody.set_ylabel("MIDI pitch")
    ax_melody.legend(loc="upper right", fontsize=8)

    drums = sorted({o["drum"] for o in truth["drum_onsets"]})
    for onset in truth["drum_onsets"]:
        ax_drums.plot(onset["time"], drums.index(onset["drum"]), "k|", markersize=8, clip_on=False,
                      alpha=0.4 + 0.6 * onset["velocity"] / 127)
    ax_drums.set_yticks(range(len(drums)), drums, fontsize=8)
    ax_drums.set_ylim(-0.8, max(len(drums), 1) - 0.2)
    if not drums:
        ax_drums.text(duration / 2, 0, "no drums", ha="center", va="center")
    ax_drums.set_xlabel(f"time (s) — {truth['tempo_bpm']:.0f} BPM, {truth['time_signature']}, {truth['key']}, "
                        f"drums: {truth['drum_style'] or 'none'}")
    ax_drums.set_xlim(0, duration)
    fig.tight_layout()
    return save_png(fig, out, dpi=DPI)


def plot_clip(clip: str, corpus_root: str | Path, out: str | Path) -> Path:
    path = find_truth(clip, corpus_root)
    truth = read_truth(path)
    if truth is None:
        raise ValueError(f"{path}: unreadable truth JSON")
    return plot_truth(truth, out)
