"""`chordflow melody plot`: a salience map with the truth melody and the JASCO condition overlaid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.melody.config import MelodyConfig


def hz_to_bin(f0: np.ndarray) -> np.ndarray:
    """Hz -> fractional salience bin (NaN for unvoiced / non-positive)."""
    from stages.melody.constants import BINS_PER_OCTAVE, FMIN

    f0 = np.asarray(f0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f0 > 0, BINS_PER_OCTAVE * np.log2(f0 / FMIN), np.nan)


def plot_salience(audio_path: str | Path, out_png: str | Path, stage: MelodyConfig,
                  truth_path: str | Path | None = None, model: str | None = None) -> Path:
    """Render the ``model`` (default: the stage's) salience of ``audio_path`` to ``out_png``.

    Overlays the truth melody f0 (if ``truth_path``) and the stage's 53-semitone melody.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.atomic import save_png
    from pipeline.audio import load_audio
    from stages.melody.backends import load_salience_model
    from stages.melody.chunking import predict_salience
    from stages.melody.constants import (
        BINS_PER_OCTAVE,
        BINS_PER_SEMITONE,
        FMIN,
        FMIN_MIDI,
        JASCO_LOWEST_MIDI,
        N_BINS,
        SALIENCE_FRAME_RATE,
        SAMPLE_RATE,
    )
    from stages.melody.evaluate import read_truth_melody
    from stages.melody.hcqt import compute_hcqt
    from stages.melody.jasco import condition_frame_times, index_to_midi, jasco_melody

    model = model or stage.model
    samples, sr = load_audio(audio_path, sample_rate=SAMPLE_RATE, channels=1)
    salience_model = load_salience_model(model, stage.backend, stage.weights_dir, stage.threads, stage.device,
                                         stage.precision)
    salience = predict_salience(salience_model, compute_hcqt(samples[0], sr, stage.hcqt), stage.chunk_frames,
                                stage.batch_size, stage.overlap_frames)
    duration = salience.shape[1] / SALIENCE_FRAME_RATE

    fig, ax = plt.subplots(figsize=(12, 5), dpi=100)
    ax.imshow(salience, origin="lower", aspect="auto", cmap="magma", vmin=0.0, vmax=1.0,
              extent=(0.0, duration, -0.5, N_BINS - 0.5), interpolation="nearest")
    if truth_path is not None:
        times, f0 = read_truth_melody(truth_path)
        ax.plot(times, hz_to_bin(f0), color="cyan", linewidth=1.2, label="truth melody")
    if stage.model == model:
        _, index = jasco_melody(salience, samples.shape[-1], sr, stage.frame_rate, stage.threshold)
        midi = index_to_midi(index)
        bins = (midi - FMIN_MIDI) * BINS_PER_SEMITONE
        ax.plot(condition_frame_times(len(index), stage.frame_rate), bins, ".", color="lime", markersize=2.5,
                label=f"JASCO condition (53 semitones from MIDI {JASCO_LOWEST_MIDI}, {stage.frame_rate:g} fps)")
    octaves = np.arange(0, N_BINS + 1, BINS_PER_OCTAVE)
    ax.set_yticks(octaves, [f"C{1 + i} ({FMIN * 2 ** i:.0f} Hz)" for i in range(len(octaves))])
    ax.set_xlabel("time (s)")
    ax.set_title(f"DeepSalience {model} ({stage.backend}) - {Path(audio_path).name}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    return save_png(fig, out_png)
