"""``chordflow latents plot``: original vs decoded spectrograms of one clip, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import save_png
from stages.latents.codec import Codec
from stages.latents.metrics import align

PLOT_N_FFT = 2048
PLOT_HOP = 256
PLOT_FMIN_HZ = 30.0
PLOT_DB_RANGE = 80.0


def _spectrogram_db(wav: np.ndarray) -> np.ndarray:
    import torch

    magnitude = torch.stft(torch.from_numpy(wav), PLOT_N_FFT, PLOT_HOP, window=torch.hann_window(PLOT_N_FFT),
                           return_complex=True).abs().numpy()
    return 20.0 * np.log10(np.maximum(magnitude, 1e-6))


def plot_roundtrip(codec: Codec, wav: np.ndarray, out: str | Path, title: str = "") -> Path:
    """Encode/decode ``wav`` (mono at the codec rate) and draw both spectrograms on a log-frequency
    axis (where harmony lives), plus their dB difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    original, decoded = align(wav, codec.decode(codec.encode(wav)))
    panels = [_spectrogram_db(original), _spectrogram_db(decoded)]
    panels.append(panels[1] - panels[0])
    top = float(panels[0].max())
    freqs = np.arange(PLOT_N_FFT // 2 + 1) * codec.sample_rate / PLOT_N_FFT
    times = np.arange(panels[0].shape[1]) * PLOT_HOP / codec.sample_rate
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, constrained_layout=True)
    names = ("original", f"decoded by {codec.name}", "decoded − original (dB)")
    for axis, data, name in zip(axes, panels, names):
        limits = dict(vmin=-30.0, vmax=30.0, cmap="coolwarm") if axis is axes[2] else \
            dict(vmin=top - PLOT_DB_RANGE, vmax=top, cmap="magma")
        image = axis.pcolormesh(times, freqs, data, shading="auto", rasterized=True, **limits)
        axis.set_yscale("log")
        axis.set_ylim(PLOT_FMIN_HZ, codec.sample_rate / 2)
        axis.set_ylabel("Hz")
        axis.set_title(name)
        fig.colorbar(image, ax=axis)
    axes[-1].set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    return save_png(fig, out, dpi=100)
