"""The honest curve: how chord, melody and drum adherence and realism grow with training steps and
model size, judged by the independent judges on the held-out test prompts.

    python bench/bench_curve.py [--steps 1100 2200 4400 8800] [--presets tiny small]
        [--prompts data/heldout/prompts.jsonl] [--groups chords_given all_given chords_dropped]
        [--ceiling metrics/model_ceiling.json] [--reference-manifest manifests/demo.parquet]
        [--heldout-real data/heldout/ceiling/report.json]
        [--params params.yaml] [--work DIR] [--json OUT] [--plot OUT.png]
    python bench/bench_curve.py --replot OUT.json --plot OUT.png     # the figure of an earlier run
    python bench/bench_curve.py --rescore OUT.json --work DIR --json OUT  # judge its kept clips again

One training run per preset on the demo features (paths as in dvc.yaml), with the params' ``model``
and ``train`` sections and ``train.steps`` set to the largest step count: the learning-rate schedule
spans that longest run, so a point on the curve is that run's checkpoint at the step, not a run
trained to that length (the demo's own 1,200-step model decays its rate by then, and scores a little
differently). At each step the checkpoint generates the prompts of ``--groups`` (the product's
``generate_batch_file``) and ``chordflow eval``'s scorer scores them with every judge, on the
executor of params.yaml. Reported per point: the CNN judge's chord accuracy and its ratio to the
judge's decode ceiling (``--ceiling``: the dvc pipeline's ``metrics/model_ceiling.json``), Chordino's,
CREPE's and DeepSalience's melody accuracy, the onset F1, the musicnn Fréchet distance of each group
over real-vs-real and over the held-out requests' own real clips (``--heldout-real``, the same-size
yardstick of ``chordflow eval score``), the tonal energy fraction, and the training seconds so far.

Cost on 2 CPU cores, tiny preset: ~6 minutes of training per 1,000 steps plus a few minutes per point.
The small preset (d=512 x 8 layers, about 8x the matmul work per token) is for a GPU
(``train.device: cuda`` in the params file given).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_train import DEMO_PATHS  # noqa: E402
from bench.figures import report_figures  # noqa: E402
from model.evaluation.embedding import HeldoutReal  # noqa: E402

DEFAULT_STEPS = (1100, 2200, 4400, 8800)
DEFAULT_GROUPS = ("chords_given", "all_given", "chords_dropped")
#: Prompt fields that name files, relative to the prompts file's folder.
PATH_FIELDS = ("melody", "drums", "controls_from", "audio")
#: Per-group score columns reported at every point (means over the group's clips).
COLUMNS = ("chord_accuracy_cnn", "chord_accuracy", "melody_accuracy_crepe", "melody_accuracy", "onset_f1",
           "tonal_energy_fraction")


def ceiling_scores(path: Path) -> dict[str, float]:
    """The decode ceiling's mean of each column (the real clips through the codec)."""
    if not path.is_file():
        return {}
    groups = json.loads(path.read_text())["groups"]
    ceiling = groups.get("ceiling") or next(iter(groups.values()))
    return {column: ceiling[column]["mean"] for column in COLUMNS if column in ceiling}


def ceiling_frechet_ratio(path: Path, yardstick: str = "real_vs_real") -> float | None:
    """The decode ceiling's musicnn Fréchet distance over ``yardstick`` (``real_vs_real`` or
    ``heldout_real``): what the codec alone costs."""
    if not path.is_file():
        return None
    frechet = json.loads(path.read_text()).get("realism", {}).get("frechet", {})
    distance, real = frechet.get("distance"), frechet.get(yardstick)
    return distance / real if isinstance(distance, (int, float)) and isinstance(real, (int, float)) and real else None


#: (panel title, column, target ratio or None) of the figure's adherence panels, as ratios to the ceiling.
PANELS = (("chords: CNN judge / its ceiling", "chord_accuracy_cnn", 0.9),
          ("chords: Chordino / its ceiling", "chord_accuracy", None),
          ("melody: DeepSalience / its ceiling", "melody_accuracy", None))


def plot_curve(figures: dict[str, Any], out: Path) -> None:
    """Adherence (ratio to each judge's decode ceiling) and musicnn realism against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(4.2 * (len(PANELS) + 1), 3.8))
    points = [p for run in figures["presets"].values() for p in run["points"].values()]
    yardstick = "heldout_real" if any("musicnn_frechet_over_heldout_real" in row for p in points
                                      for row in p["groups"].values()) else "real_vs_real"
    for preset, run in figures["presets"].items():
        steps = sorted(int(s) for s in run["points"])
        groups = sorted({g for p in run["points"].values() for g in p["groups"]})
        for index, group in enumerate(groups):
            rows = [run["points"][str(s)]["groups"].get(group, {}) for s in steps]
            style = dict(marker="o", color=f"C{index}", label=f"{preset}: {group}")
            for ax, (_, column, _) in zip(axes, PANELS):
                values = [r.get(f"{column}_over_ceiling") for r in rows]
                if any(v is not None for v in values):
                    ax.plot(steps, [float("nan") if v is None else v for v in values], **style)
            axes[-1].plot(steps, [r.get(f"musicnn_frechet_over_{yardstick}", float("nan")) for r in rows], **style)
    for ax, (title, _, target) in zip(axes, PANELS):
        ax.set_title(title, fontsize=10)
        ax.axhline(1.0, color="grey", lw=0.8)
        if target:
            ax.axhline(target, color="red", ls="--", lw=0.8, label=f"target {target}x ceiling")
        ax.set_ylim(0, 1.1)
    realism = axes[-1]
    realism.set_title("realism: musicnn Fréchet / " + ("held-out real clips" if yardstick == "heldout_real"
                                                       else "real-vs-real halves"), fontsize=10)
    realism.axhline(3.0, color="red", ls="--", lw=0.8, label="target 3x")
    if figures.get(f"ceiling_frechet_over_{yardstick}"):
        realism.axhline(figures[f"ceiling_frechet_over_{yardstick}"], color="black", ls=":", lw=1,
                        label="decode ceiling (real clips through the codec)")
    realism.set_yscale("log")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(figures["steps"], [str(step) for step in figures["steps"]])
        ax.set_xlabel("training steps")
    axes[0].legend(fontsize=7)
    realism.legend(fontsize=7)
    fig.suptitle(f"Held-out test prompts ({figures['prompts']}), independent judges, against training steps", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def select_prompts(source: Path, groups: list[str], out: Path) -> Path:
    """The prompts of ``groups`` written to ``out``, their file fields made absolute (so the copy
    lives in the work folder, not beside the pipeline's own outputs)."""
    lines = []
    for line in source.read_text().splitlines():
        prompt = json.loads(line)
        if prompt.get("group") in groups:
            for field in PATH_FIELDS:
                if prompt.get(field):
                    prompt[field] = str((source.parent / prompt[field]).resolve())
            lines.append(json.dumps(prompt))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def score_point(checkpoint: Path, prompts: Path, groups: list[str], params: dict, reference_manifest: str,
                ceiling: dict[str, float], work: Path, heldout: HeldoutReal | None = None) -> dict[str, Any]:
    """Generate and judge one checkpoint (see :func:`score_report`)."""
    from model.sampling.generate import ReferenceConfigs, generate_batch_file, load_generator

    started = time.perf_counter()
    generator = load_generator(checkpoint, params.get("generate"))
    selected = select_prompts(prompts, groups, work / "prompts.jsonl")
    report = generate_batch_file(generator, selected, work, ReferenceConfigs.from_params(params), progress=False)
    generate_s = time.perf_counter() - started
    return {"clips": len(report["clips"]), "generate_s": round(generate_s, 1),
            **score_report(work / "report.json", params, reference_manifest, ceiling, heldout)}


def score_report(report: Path, params: dict, reference_manifest: str, ceiling: dict[str, float],
                 heldout: HeldoutReal | None = None) -> dict[str, Any]:
    """Judge one point's generated clips: per group, each column's mean, its ratio to the ceiling,
    and the musicnn Fréchet distance over real-vs-real (and over the held-out real clips)."""
    from model.evaluation.score import evaluate_report
    from pipeline.executors import executor_from_params

    started = time.perf_counter()
    with executor_from_params(params) as executor:
        metrics, _ = evaluate_report(report, params, reference_manifest, progress=False,
                                     executor=executor, heldout=heldout)
    frechet = metrics.get("realism", {}).get("frechet", {})
    real_vs_real, heldout_real = frechet.get("real_vs_real"), frechet.get("heldout_real")
    point: dict[str, Any] = {"score_s": round(time.perf_counter() - started, 1), "groups": {}}
    for group, columns in sorted(metrics["groups"].items()):
        row: dict[str, Any] = {}
        for column in COLUMNS:
            if column in columns and "mean" in columns[column]:
                row[column] = round(columns[column]["mean"], 4)
                if ceiling.get(column):
                    row[f"{column}_over_ceiling"] = round(columns[column]["mean"] / ceiling[column], 3)
        distance = frechet.get("groups", {}).get(group)
        if isinstance(distance, (int, float)) and real_vs_real:
            row["musicnn_frechet"] = distance
            row["musicnn_frechet_over_real_vs_real"] = round(distance / real_vs_real, 2)
            if isinstance(heldout_real, (int, float)) and heldout_real > 0:
                row["musicnn_frechet_over_heldout_real"] = round(distance / heldout_real, 2)
        point["groups"][group] = row
    return point


def rescore(figures: dict[str, Any], work: Path, params: dict, args: argparse.Namespace,
            ceiling: dict[str, float], heldout: HeldoutReal | None) -> dict[str, Any]:
    """Judge an earlier run's kept clips again (``--work`` of that run), e.g. with a new yardstick;
    its training figures stay."""
    for preset, run in figures["presets"].items():
        for step, point in run["points"].items():
            point.update(score_report(work / preset / f"step{step}" / "report.json", params, args.reference_manifest,
                                      ceiling, heldout))
            print(preset, step, json.dumps(point["groups"]), flush=True)
    return figures


def run_preset(preset: str, steps: list[int], params: dict, args: argparse.Namespace, ceiling: dict[str, float],
               work: Path, heldout: HeldoutReal | None = None) -> dict[str, Any]:
    """Train ``preset`` once to ``max(steps)``, scoring the checkpoint at every step of ``steps``."""
    from model.config import ModelParams, TrainConfig
    from model.training.train import Trainer, TrainPaths
    from pipeline.config import load_section

    model_params = dataclasses.replace(load_section(ModelParams, "model", params), preset=preset)
    cfg = dataclasses.replace(load_section(TrainConfig, "train", params), steps=max(steps))
    trainer = Trainer(TrainPaths(out_dir=str(work / "run"), **DEMO_PATHS), model_params, cfg)
    points, train_s = {}, 0.0
    for step in sorted(steps):
        started = time.perf_counter()
        trainer.run(progress=True, stop_at=step)  # saves the checkpoint at the stop
        train_s += time.perf_counter() - started
        checkpoint = work / f"step{step}.pt"
        shutil.copyfile(work / "run" / "checkpoint.pt", checkpoint)
        point = score_point(checkpoint, Path(args.prompts), args.groups, params, args.reference_manifest, ceiling,
                            work / f"step{step}", heldout)
        point.update(train_s=round(train_s, 1), mean_loss_last_50=round(float(np.mean(trainer.losses[-50:])), 4))
        points[str(step)] = point
        print(preset, step, json.dumps(point["groups"]), flush=True)
    return {"parameters": trainer.model.parameter_count(), "points": points}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS))
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--prompts", default="data/heldout/prompts.jsonl", help="held-out prompts (test split)")
    parser.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS))
    parser.add_argument("--ceiling", default="metrics/model_ceiling.json")
    parser.add_argument("--reference-manifest", default="manifests/demo.parquet")
    parser.add_argument("--heldout-real", default="data/heldout/ceiling/report.json",
                        help="the ceiling report whose source tracks are the same-size Fréchet yardstick ('' = none)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--work", help="keep the checkpoints and clips here (default: a temporary folder)")
    parser.add_argument("--json")
    parser.add_argument("--plot", help="also draw the curve as a PNG")
    parser.add_argument("--replot", metavar="JSON", help="only draw --plot from this earlier run's JSON")
    parser.add_argument("--rescore", metavar="JSON", help="judge the clips an earlier run kept in --work again")
    args = parser.parse_args()
    if args.replot:
        if not args.plot:
            parser.error("--replot needs --plot")
        plot_curve(json.loads(Path(args.replot).read_text()), Path(args.plot))
        return 0
    from pipeline.config import read_params_if_present

    params = read_params_if_present(args.params)
    ceiling = ceiling_scores(Path(args.ceiling))
    heldout = HeldoutReal.from_report(args.heldout_real) if args.heldout_real else None
    figures: dict[str, Any] = {"steps": sorted(args.steps), "groups": args.groups, "prompts": args.prompts,
                               "ceiling": ceiling, "ceiling_frechet_over_real_vs_real": ceiling_frechet_ratio(Path(args.ceiling)),
                               "ceiling_frechet_over_heldout_real": ceiling_frechet_ratio(Path(args.ceiling), "heldout_real"),
                               "presets": {}}
    if args.rescore:
        if not args.work:
            parser.error("--rescore needs the --work folder of that run")
        figures = {**json.loads(Path(args.rescore).read_text()), "ceiling": ceiling,
                   "ceiling_frechet_over_real_vs_real": figures["ceiling_frechet_over_real_vs_real"],
                   "ceiling_frechet_over_heldout_real": figures["ceiling_frechet_over_heldout_real"]}
        figures = rescore(figures, Path(args.work), params, args, ceiling, heldout)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_curve_") as tmp:
            root = Path(args.work or tmp)
            for preset in args.presets:
                figures["presets"][preset] = run_preset(preset, args.steps, params, args, ceiling, root / preset,
                                                        heldout)
    report_figures(figures, args.json)
    if args.plot:
        plot_curve(figures, Path(args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
