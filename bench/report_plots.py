"""PNG plots of the benchmark report (bench/report.py): stage throughput, parallel efficiency,
executor overhead, sampling time and chord adherence vs model calls. A plot whose figures are
missing is not drawn (and an older PNG of that name is removed, so the report never shows stale data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.atomic import save_png

PLOTS = ("stage_throughput.png", "parallel_efficiency.png", "executor_overhead.png", "sampling.png")


def _figure(width: float = 6.4, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), constrained_layout=True)


def stage_throughput(scaling: dict, out: Path) -> None:
    rows = [r for r in scaling["stages"] if "audio_s_per_cpu_s" in r]
    fig, ax = _figure()
    names = [r["stage"] for r in rows]
    values = [r["audio_s_per_cpu_s"] for r in rows]
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=3)
    ax.set_xscale("log")
    ax.set_xlabel("audio seconds per CPU second (log)")
    ax.set_title(f"Per-stage throughput, serial, {scaling['tracks']} demo tracks")
    ax.invert_yaxis()
    save_png(fig, out / "stage_throughput.png", dpi=120)


def parallel_efficiency(scaling: dict, out: Path) -> None:
    effs = scaling["scaling"]["efficiency"]
    fig, ax = _figure()
    x = range(len(effs))
    width = 0.38
    run = ax.bar([i - width / 2 for i in x], [100 * e["efficiency"] for e in effs], width, label="run only")
    full = ax.bar([i + width / 2 for i in x], [100 * e["efficiency_with_startup"] for e in effs], width,
                  label="incl. executor start-up")
    ax.bar_label(run, fmt="%.0f%%", padding=2)
    ax.bar_label(full, fmt="%.0f%%", padding=2)
    ax.axhline(100, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(list(x), [e["backend"] for e in effs])
    ax.set_ylabel("parallel efficiency, 2 vs 1 workers (%)")
    ax.set_ylim(0, 120)
    ax.set_title(f"Stage {scaling['scaling']['stage']}: {scaling['scaling']['shards']} shards")
    ax.legend(loc="lower right")
    save_png(fig, out / "parallel_efficiency.png", dpi=120)


def executor_overhead(executors: dict, out: Path) -> None:
    rows = executors["results"]
    fig, ax = _figure(5.2, 3.0)
    values = [max(r["overhead_ms_per_task"], 1e-3) for r in rows]
    bars = ax.bar([r["backend"] for r in rows], values, color="tab:orange")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=2)
    ax.set_yscale("log")
    ax.set_ylabel("overhead per task (ms, log)")
    ax.set_title(f"Executor overhead, {rows[0]['tasks']} trivial tasks")
    save_png(fig, out / "executor_overhead.png", dpi=120)


def sampling(result: dict, out: Path) -> None:
    """Euler budgets as lines; other solvers (dopri5) as lone points at their measured call count."""
    rows = sorted(result["rows"], key=lambda r: r["model_calls"])
    euler = [r for r in rows if r["solver"] == "euler"]
    others = [r for r in rows if r["solver"] != "euler"]
    per_10s_model = lambda r: r["model_s_per_clip"] * 10 / r["clip_seconds"]
    fig, ax = _figure()
    right = ax.twinx()
    for subset, style in ((euler, "-"), (others, "")):
        if not subset:
            continue
        calls = [r["model_calls"] for r in subset]
        label = (lambda text: text) if style else (lambda text: "_nolegend_")  # lone points are annotated
        ax.plot(calls, [per_10s_model(r) for r in subset], "o" + style, color="tab:blue", label=label("model (ODE solve)"))
        ax.plot(calls, [r["seconds_per_10s"] for r in subset], "s" + style, color="tab:orange",
                label=label("model + decode"))
        right.plot(calls, [r["chord_accuracy"] for r in subset], "^" + style, color="tab:green",
                   label=label("chord accuracy"))
    for r in others:
        ax.annotate(r["solver"], (r["model_calls"], r["seconds_per_10s"]), textcoords="offset points",
                    xytext=(-10, 6), fontsize=8)
    calls = [r["model_calls"] for r in (euler or rows)]  # lone points are annotated, not ticked (labels collide)
    ax.set_xscale("log")
    ax.set_xticks(calls, [str(c) for c in calls])
    ax.minorticks_off()
    ax.set_xlabel("model calls per clip (log)")
    ax.set_ylabel("seconds per 10 s of audio")
    if result.get("ceiling_chord_accuracy") is not None:
        right.axhline(result["ceiling_chord_accuracy"], color="tab:green", linestyle="--", linewidth=1,
                      label="decode ceiling")
    right.set_ylim(0, 1)
    right.set_ylabel("chord accuracy (majmin)")
    lines, more = ax.get_legend_handles_labels(), right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=4, frameon=False)
    ax.set_title(f"Sampling: {result['clips']} held-out prompts, batch {result['batch_size']}")
    save_png(fig, out / "sampling.png", dpi=120)


def write_plots(out: Path, scaling: dict | None, sampling_result: dict | None, executors: dict | None) -> list[Path]:
    """Draw every plot whose figures exist; returns the PNGs written."""
    for name in PLOTS:
        (out / name).unlink(missing_ok=True)
    jobs: list[tuple[Any, Any]] = []
    if scaling and any("audio_s_per_cpu_s" in r for r in scaling["stages"]):
        jobs.append((stage_throughput, scaling))
    if scaling and scaling["scaling"]["efficiency"]:
        jobs.append((parallel_efficiency, scaling))
    if executors and executors.get("results"):
        jobs.append((executor_overhead, executors))
    if sampling_result and sampling_result.get("rows"):
        jobs.append((sampling, sampling_result))
    for draw, figures in jobs:
        draw(figures, out)
    return [out / name for name in PLOTS if (out / name).exists()]
