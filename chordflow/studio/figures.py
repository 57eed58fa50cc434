"""The figures beside each output and a song's extracted controls (PNGs, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.atomic import save_png

FIGURE_SIZE = (12, 3.2)
DPI = 100
#: Spectrogram analysis: FFT size and hop (samples), and the top of the drawn range (Hz).
FFT_SIZE = 2048
HOP = 512
TOP_HZ = 8000.0
MELODY_COLOURS = {"requested": "cyan", "extracted": "white"}

Segment = tuple[str, float, float]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _midi_hz(index: np.ndarray) -> np.ndarray:
    from stages.melody.jasco import index_to_midi

    return 440.0 * 2 ** ((index_to_midi(np.asarray(index)) - 69) / 12)


def plot_spectrogram(wav: np.ndarray, sample_rate: int, out: Path, title: str,
                     melodies: dict[str, tuple[np.ndarray, float]] | None = None) -> Path:
    """Log-magnitude spectrogram of (N,) audio with melody lines over it.

    melodies: name ("requested" / "extracted") -> ((T,) melody index, -1 unvoiced; its frame rate)."""
    import librosa

    plt = _pyplot()
    spectrum = np.abs(librosa.stft(np.asarray(wav, dtype=np.float32), n_fft=FFT_SIZE, hop_length=HOP))
    db = librosa.amplitude_to_db(spectrum + 1e-9, ref=np.max)
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    duration = len(wav) / sample_rate
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
              extent=(0.0, duration, 0.0, sample_rate / 2))
    for name, (index, rate) in (melodies or {}).items():
        times = np.arange(len(index)) / rate
        ax.plot(times, _midi_hz(index), ".", ms=2, color=MELODY_COLOURS.get(name, "lime"), label=f"melody {name}")
    if melodies:
        ax.legend(loc="upper right", fontsize=7)
    ax.set_ylim(0, min(TOP_HZ, sample_rate / 2))
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Hz")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, out, dpi=DPI)


def plot_song(timeline: Sequence[Segment], melody: np.ndarray | None, melody_rate: float,
              onsets: np.ndarray | None, duration: float, out: Path, title: str) -> Path:
    """A song's controls as the stages extract them: chords, melody roll (MIDI), drum onsets."""
    plt = _pyplot()
    from model.evaluation.plot import draw_chord_row, label_colours
    from stages.melody.jasco import index_to_midi

    fig, axes = plt.subplots(3, 1, figsize=(12, 4.6), sharex=True, gridspec_kw={"height_ratios": [1, 2, 0.6]})
    draw_chord_row(axes[0], timeline, label_colours(timeline), duration, "chords")
    if melody is not None:
        axes[1].plot(np.arange(len(melody)) / melody_rate, index_to_midi(np.asarray(melody)), ".", ms=2)
    axes[1].set_ylabel("melody (MIDI)")
    if onsets is not None:
        axes[2].vlines(onsets, 0, 1, color="k", lw=0.8)
    axes[2].set_yticks([])
    axes[2].set_ylabel("drum onsets", rotation=0, ha="right", va="center")
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlim(0, duration)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return save_png(fig, out, dpi=DPI)
