"""``chordflow eval plot``: requested vs extracted chord timeline of one generated clip, as a PNG.

Rows: the requested progression, what Chordino hears in the generated audio (both as coloured,
labelled spans; one colour per chord label, shared by the rows), and a strip of mir_eval's
comparison for the configured chord metric (green = agree, red = differ, grey = not scored).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from music.vocabulary import CHORD_NO_CHORD
from pipeline.atomic import save_png

FIGURE_SIZE = (12, 3.6)
DPI = 110
NO_CHORD_COLOUR = "0.92"
MATCH_COLOURS = {1.0: "tab:green", 0.0: "tab:red"}
UNSCORED_COLOUR = "0.8"
# Labels on spans shorter than this fraction of the clip are left out (they would overlap).
MIN_LABELLED_FRACTION = 0.025

Segment = tuple[str, float, float]


def label_colours(*rows: Sequence[Segment]) -> dict[str, Any]:
    """One colour per chord label of ``rows`` (shared by the rows of a figure)."""
    import matplotlib.pyplot as plt

    labels = sorted({label for row in rows for label, _, _ in row} - {CHORD_NO_CHORD})
    cmap = plt.get_cmap("tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def draw_chord_row(ax: Any, segments: Sequence[Segment], colours: dict[str, Any], duration: float, name: str) -> None:
    """One row of labelled chord spans on ``ax``."""
    for label, start, end in segments:
        ax.axvspan(start, end, color=colours.get(label, NO_CHORD_COLOUR), alpha=0.85, lw=0)
        ax.axvline(start, color="white", lw=0.8)
        if end - start >= MIN_LABELLED_FRACTION * duration:
            ax.text((start + end) / 2, 0.5, label, ha="center", va="center", fontsize=8)
    if not segments:
        ax.text(duration / 2, 0.5, "nothing requested", ha="center", va="center", fontsize=8, color="0.4")
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center")


def plot_request(requested: Sequence[Segment] | None, extracted: Sequence[Segment], duration_s: float,
                 out: str | Path, title: str = "", metric: str = "majmin") -> Path:
    """Draw ``requested`` (``(label, start, end)`` segments, or None) above ``extracted`` to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stages.chords.evaluate import harte_intervals, score_track

    requested = list(requested or [])
    colours = label_colours(requested, extracted)
    heights = [1.0, 1.0] + ([0.35] if requested else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=FIGURE_SIZE, sharex=True,
                             gridspec_kw={"height_ratios": heights})
    draw_chord_row(axes[0], requested, colours, duration_s, "requested")
    draw_chord_row(axes[1], extracted, colours, duration_s, "extracted")
    if requested:
        comparisons, durations = score_track(requested, extracted)[metric]
        # mir_eval's merged intervals start at the requested start and follow the durations
        edges = harte_intervals(requested)[0].min() + np.concatenate([[0.0], np.cumsum(durations)])
        for comparison, start, end in zip(comparisons, edges[:-1], edges[1:]):
            axes[2].axvspan(start, end, color=MATCH_COLOURS.get(float(comparison), UNSCORED_COLOUR), lw=0)
        axes[2].set_yticks([])
        axes[2].set_ylabel(metric, rotation=0, ha="right", va="center")
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlim(0, duration_s)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return save_png(fig, out, dpi=DPI)


def plot_clip(report_path: str | Path, clip_id: str, out: str | Path, params: Any = None) -> Path:
    """Analyse one clip of a generation report with the chords stage and draw it (see module doc)."""
    from model.evaluation.analysis import Analysers
    from model.evaluation.report import read_report
    from model.evaluation.config import eval_settings
    from model.evaluation.score import requested_segments

    config, stages = eval_settings(params)
    report = read_report(report_path)
    clip = next((c for c in report.clips if c.id == clip_id), None)
    if clip is None:
        known = ", ".join(c.id for c in report.clips[:5])
        raise KeyError(f"{report.path}: no clip {clip_id!r} (clips: {known}{', ...' if len(report.clips) > 5 else ''})")
    analysers = Analysers(stages, config)
    if not analysers.ready("chords"):
        raise RuntimeError(f"chords analyser unavailable: {analysers.skipped['chords']}")
    analysis = analysers.analyse(_chords_only(clip), embedding=False)
    if analysis.timeline is None:
        raise ValueError(f"{clip.wav}: {'; '.join(analysis.errors.values())}")
    requested = requested_segments(clip.chords, clip.duration_s) if clip.chords else None
    given = "chords given" if clip.conditions.get("chords") else "chords withheld"
    title = f"{clip.id} ({clip.group}, {given}): requested vs extracted chords"
    return plot_request(requested, analysis.timeline, max(clip.duration_s, analysis.duration_s), out, title,
                        config.chord_metric)


def _chords_only(clip: Any) -> Any:
    """``clip`` without melody and drums requests (the plot needs only the chord analysis)."""
    return dataclasses.replace(clip, melody=None, drums=None)
