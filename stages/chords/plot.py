"""``chordflow chords plot``: one track's chord timeline, truth vs extracted, as a PNG.

Rows: the truth timeline, the extracted timeline, and a strip of mir_eval's ``majmin`` comparison
over the merged segments (green = agree, red = differ, grey = not scored by majmin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from music.vocabulary import CHORD_NO_CHORD
from pipeline.atomic import save_png
from stages.chords.frames import as_segments

FIGURE_SIZE = (12, 3.6)
DPI = 110
MATCH_COLOURS = {1.0: "tab:green", 0.0: "tab:red"}
UNSCORED_COLOUR = "0.8"
# Labels on bars shorter than this fraction of the track are left out (they would overlap).
MIN_LABELLED_FRACTION = 0.025


def find_track(store: Any, clip: str | None = None, track_id: str | None = None) -> dict[str, Any]:
    """The stored row of ``track_id``, or of the track whose audio file stem is ``clip``."""
    if track_id is not None:
        return store.get(track_id)
    for row in store:
        if Path(row["path"]).stem == clip:
            return row
    raise KeyError(f"{store.out_dir}: no track with audio file stem {clip!r}")


def plot_timelines(truth: Any | None, extracted: Any, out: str | Path, title: str = "") -> Path:
    """Draw truth (may be None) and extracted timelines to a PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stages.chords.evaluate import harte_intervals, score_track

    rows = [("extracted", as_segments(extracted))]
    if truth is not None:
        rows.insert(0, ("truth", as_segments(truth)))
    duration = max(end for _, segments in rows for _, _, end in segments)
    labels = sorted({label for _, segments in rows for label, _, _ in segments} - {CHORD_NO_CHORD})
    cmap = plt.get_cmap("tab20")
    heights = [1.0] * len(rows) + ([0.35] if truth is not None else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=FIGURE_SIZE, sharex=True,
                             gridspec_kw={"height_ratios": heights})
    axes = np.atleast_1d(axes)
    for ax, (name, segments) in zip(axes, rows):
        for label, start, end in segments:
            colour = "0.92" if label == CHORD_NO_CHORD else cmap(labels.index(label) % 20)
            ax.axvspan(start, end, color=colour, alpha=0.85, lw=0)
            ax.axvline(start, color="white", lw=0.8)
            if end - start >= MIN_LABELLED_FRACTION * duration:
                ax.text((start + end) / 2, 0.5, label, ha="center", va="center", fontsize=8)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
    if truth is not None:
        ax = axes[-1]
        parts = score_track(truth, extracted)["majmin"]
        ref_intervals, _ = harte_intervals(truth)
        # merged intervals start at the reference start and follow the durations
        edges = ref_intervals.min() + np.concatenate([[0.0], np.cumsum(parts[1])])
        for comparison, start, end in zip(parts[0], edges[:-1], edges[1:]):
            ax.axvspan(start, end, color=MATCH_COLOURS.get(float(comparison), UNSCORED_COLOUR), lw=0)
        ax.set_yticks([])
        ax.set_ylabel("majmin", rotation=0, ha="right", va="center")
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlim(0, duration)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return save_png(fig, out, dpi=DPI)
