"""PNG of a training run: the per-step loss (raw and smoothed) and the held-out losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import save_png

SMOOTHING_WINDOW = 25


def read_tsv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a tab-separated file with a header line."""
    lines = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty")
    header, rows = lines[0], lines[1:]
    return {name: np.array([float(r[i]) for r in rows]) for i, name in enumerate(header)}


def plot_training(run_dir: str | Path, out: str | Path) -> Path:
    """Draw ``run_dir/losses.tsv`` and ``run_dir/val_losses.tsv`` to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    losses = read_tsv(run_dir / "losses.tsv")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(losses["step"], losses["loss"], color="0.8", lw=0.6, label="train (per step)")
    if len(losses["loss"]) >= SMOOTHING_WINDOW:
        kernel = np.ones(SMOOTHING_WINDOW) / SMOOTHING_WINDOW
        ax.plot(losses["step"][SMOOTHING_WINDOW - 1:], np.convolve(losses["loss"], kernel, mode="valid"),
                color="C0", label=f"train ({SMOOTHING_WINDOW}-step mean)")
    val_path = run_dir / "val_losses.tsv"
    if val_path.is_file():
        val = read_tsv(val_path)
        if len(val.get("step", [])):
            for i, (key, name) in enumerate([("all", "held-out, all conditions"),
                                             ("no_chords", "held-out, chords dropped"),
                                             ("none", "held-out, no condition")]):
                ax.plot(val["step"], val[key], marker="o", ms=3, color=f"C{i + 1}", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss (MSE of velocity)")
    ax.set_title(f"training: {run_dir}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_png(fig, out)
