"""``chordflow eval spectrograms``: one request's real clip, its decode ceiling and its generations,
as log-frequency spectrograms stacked on one time axis (a PNG).

The rows are what a listener compares: the real clip the prompt was made from, the same clip through
the codec alone (what the decoder can keep), and each generated group for that request. Each row's
title carries its tonal energy fraction (:mod:`model.evaluation.judges.clarity`), the share of energy in
stable partials, so smeared rows say so in numbers too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from model.evaluation.judges.clarity import HarmonicClarity, band_power
from pipeline.atomic import save_png

SAMPLE_RATE = 22050
N_FFT = 4096
HOP = 256
FMIN_HZ = 40.0
FMAX_HZ = 5000.0
DYNAMIC_RANGE_DB = 70.0
ROW_HEIGHT = 2.1
FIGURE_WIDTH = 12.0
DPI = 110


def log_spectrogram(samples: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, n) audio -> (dB (bins, frames) relative to its peak, frequencies (bins,), times (frames,))."""
    power, freqs = band_power(samples, sr, SAMPLE_RATE, N_FFT, HOP, FMIN_HZ, FMAX_HZ)
    db = 10.0 * np.log10(power.T + 1e-12)
    times = (np.arange(power.shape[0]) * HOP + N_FFT / 2) / SAMPLE_RATE
    return np.maximum(db - db.max(), -DYNAMIC_RANGE_DB), freqs, times


def plot_spectrograms(rows: Sequence[tuple[str, Path]], out: str | Path, title: str = "",
                      seconds: float | None = None) -> Path:
    """Stack the spectrograms of ``rows`` ((name, audio file)) to ``out``; ``seconds`` crops each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.audio import load_audio

    clarity = HarmonicClarity()
    fig, axes = plt.subplots(len(rows), 1, figsize=(FIGURE_WIDTH, ROW_HEIGHT * len(rows)), sharex=True, squeeze=False)
    for ax, (name, path) in zip(axes[:, 0], rows):
        samples, sr = load_audio(path, duration_s=seconds)
        db, freqs, times = log_spectrogram(samples, sr)
        ax.pcolormesh(times, freqs, db, shading="auto", cmap="magma", vmin=-DYNAMIC_RANGE_DB, vmax=0.0)
        ax.set_yscale("log")
        ax.set_ylim(FMIN_HZ, FMAX_HZ)
        ax.set_ylabel("Hz")
        ax.set_title(f"{name}: tonal energy fraction {clarity.hear(samples, sr):.2f}", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, out, dpi=DPI)


def request_rows(report: str | Path, ceiling: str | Path, manifest: str | Path, clip: str) -> list[tuple[str, Path]]:
    """The rows for held-out ``clip`` (e.g. ``heldout_000``): its real source track (from the manifest),
    its ceiling clip and every generated clip of the same request (ids ``<clip>_<group>``)."""
    from model.evaluation.report import read_report
    from pipeline.manifest import read_manifest

    ceiling_clips = {c.id: c for c in read_report(ceiling).clips}
    if clip not in ceiling_clips:
        raise KeyError(f"{ceiling}: no ceiling clip {clip!r} (ids: {', '.join(sorted(ceiling_clips)[:5])}...)")
    source = ceiling_clips[clip].source_track
    paths = dict(zip(*(read_manifest(manifest).column(name).to_pylist() for name in ("track_id", "path"))))
    if source not in paths:
        raise KeyError(f"{manifest}: no track {source!r} (the source of {clip})")
    rows = [(f"real ({Path(paths[source]).name})", Path(paths[source])),
            ("decode ceiling (real through the codec)", ceiling_clips[clip].wav)]
    generated = [c for c in read_report(report).clips if c.id.startswith(f"{clip}_")]
    if not generated:
        raise KeyError(f"{report}: no generated clip of request {clip!r}")
    return rows + [(f"generated: {c.group}", c.wav) for c in generated]
