"""Sampling time for 10 s of audio at several model-call budgets, and the chord adherence at each.

    python bench/bench_sampling.py [--checkpoint models/demo/checkpoint.pt]
        [--prompts data/heldout/prompts.jsonl] [--group chords_given] [--limit 12]
        [--budgets 8,16,32,100] [--no-dopri5] [--ceiling data/heldout/ceiling/report.json]
        [--params params.yaml] [--keep DIR] [--json OUT]

For each budget the ``--group`` prompts (the first ``--limit``) are generated with the product's
batch path (``model.sampling.generate.generate_batch_file``, the code behind ``chordflow generate``) at the
``generate`` section of params.yaml, with Euler and ``steps`` = budget (one model call per step:
the guidance branches share one batched forward pass), and once with dopri5 (adaptive: its call
count is reported). Time is split into the ODE solve (model time) and the codec decode, per clip
of ``duration`` (10 s for the held-out prompts) when clips are generated ``generate.batch_size`` at
a time, plus the latency of one clip alone (batch 1). The clips are scored with the code behind
``chordflow eval score`` (held-out chords_given prompts carry no melody or drums, so only the
chords analyser runs): chord accuracy (mir_eval majmin), its chance twin (scored against another
prompt's progression) and the decode ceiling, i.e. the same analyser on the same held-out real
clips passed through the codec alone (``--ceiling``, scored here for the same clips).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.atomic import atomic_write_text  # noqa: E402
from pipeline.config import read_params  # noqa: E402

DEFAULT_CHECKPOINT = "models/demo/checkpoint.pt"  # what `dvc repro` trains
DEFAULT_PROMPTS = "data/heldout/prompts.jsonl"  # what `dvc repro` writes (stage heldout)
DEFAULT_CEILING = "data/heldout/ceiling/report.json"
DEFAULT_GROUP = "chords_given"
DEFAULT_LIMIT = 12
DEFAULT_BUDGETS = "8,16,32,100"
ADAPTIVE_SOLVER = "dopri5"


def select_prompts(path: Path, group: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` lines of ``group`` (0 = all), as parsed JSON."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = [row for row in rows if row.get("group") == group]
    if not chosen:
        raise ValueError(f"{path}: no prompt of group {group!r}")
    return chosen[:limit] if limit else chosen


class TimedGenerator:
    """Wraps a MusicGenerator's solve and decode to add up their wall time and the model calls."""

    def __init__(self, generator) -> None:
        self.generator = generator
        self.model_s = self.decode_s = 0.0
        self.calls: list[int] = []
        solve, decode = generator.sample_latents, generator.decode

        def timed_solve(*args, **kwargs):
            started = time.perf_counter()
            out = solve(*args, **kwargs)
            self.model_s += time.perf_counter() - started
            self.calls.append(generator.last_function_evaluations)
            return out

        def timed_decode(*args, **kwargs):
            started = time.perf_counter()
            out = decode(*args, **kwargs)
            self.decode_s += time.perf_counter() - started
            return out

        generator.sample_latents, generator.decode = timed_solve, timed_decode

    def reset(self) -> None:
        self.model_s = self.decode_s = 0.0
        self.calls = []


def ceiling_report(ceiling: Path, prompts: list[dict[str, Any]], group: str, out: Path) -> Path | None:
    """A report of the ceiling clips matching ``prompts`` (id without the ``_<group>`` suffix), chords
    only (melody and drums requests removed so only the chords analyser runs); None if none match."""
    if not ceiling.is_file():
        return None
    report = json.loads(ceiling.read_text())
    wanted = {p["id"].removesuffix(f"_{group}") for p in prompts}
    clips = [{**clip, "wav": str((ceiling.parent / clip["wav"]).resolve()), "melody": None, "drums": None}
             for clip in report["clips"] if clip["id"] in wanted]
    if not clips:
        return None
    atomic_write_text(out, json.dumps({**report, "clips": clips}, indent=1) + "\n")
    return out


def chord_scores(report: Path, params: dict, group: str) -> dict[str, float | None]:
    from model.evaluation.score import evaluate_report

    metrics, _ = evaluate_report(report, params, progress=False)
    stats = metrics["groups"].get(group, {})
    mean = lambda name: stats.get(name, {}).get("mean")
    return {"chord_accuracy": mean("chord_accuracy"), "chord_accuracy_chance": mean("chord_accuracy_chance"),
            "chord_iou": mean("chord_iou"), "no_chord_fraction": mean("no_chord_fraction"),
            "eval_seconds": metrics["timing"]["seconds"], "clips_scored": stats.get("chord_accuracy", {}).get("n", 0)}


def run_budget(timed: TimedGenerator, base_cfg, solver: str, steps: int, prompts_file: Path, prompts: list,
               out_dir: Path, params: dict, group: str) -> dict[str, Any]:
    from model.sampling.generate import ReferenceConfigs, generate_batch_file

    generator = timed.generator
    generator.params = dataclasses.replace(base_cfg, solver=solver, steps=steps)
    timed.reset()
    started = time.perf_counter()
    report = generate_batch_file(generator, prompts_file, out_dir, ReferenceConfigs.from_params(params),
                                 progress=False)
    wall = time.perf_counter() - started
    n = len(report["clips"])
    if report["rejects"]:
        raise RuntimeError(f"{prompts_file}: prompts rejected: {report['rejects'][:3]}")
    batched = {"model_s": timed.model_s, "decode_s": timed.decode_s, "calls": max(timed.calls)}
    # One clip alone: the latency a user waits for a single piece.
    first = prompts[0]
    generator.set_generation_params(duration=float(first.get("duration") or base_cfg.seconds), seed=base_cfg.seed)
    timed.reset()
    generator.generate_music([first.get("description")], chords=[first.get("chords")])
    latency = {"model_s": timed.model_s, "decode_s": timed.decode_s}
    clip_s = sum(c["duration_s"] for c in report["clips"]) / n
    row = {"solver": solver, "steps": steps if solver != ADAPTIVE_SOLVER else None, "model_calls": batched["calls"],
           "clips": n, "batch_size": base_cfg.batch_size, "clip_seconds": clip_s, "wall_s": wall,
           "model_s_per_clip": batched["model_s"] / n, "decode_s_per_clip": batched["decode_s"] / n,
           "latency_model_s": latency["model_s"], "latency_decode_s": latency["decode_s"],
           **chord_scores(out_dir / "report.json", params, group)}
    row["seconds_per_10s"] = (row["model_s_per_clip"] + row["decode_s_per_clip"]) * 10.0 / clip_s
    return row


def markdown(result: dict[str, Any]) -> str:
    ceiling = result.get("ceiling_chord_accuracy")
    lines = [f"{result['clips']} prompts of group {result['group']}, cfg_coef_all {result['cfg_coef_all']}, "
             f"batch {result['batch_size']}, {result['threads']} threads; decode ceiling "
             f"{'-' if ceiling is None else f'{ceiling:.3f}'} ({result['ceiling_source']})", "",
             "| solver | model calls | model s / clip | decode s / clip | s per 10 s (batched) | latency s (batch 1) "
             "| chord acc | chance | acc / ceiling | no-chord frames |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        ratio = "-" if not ceiling or r["chord_accuracy"] is None else f"{r['chord_accuracy'] / ceiling:.2f}"
        fmt = lambda v: "-" if v is None else f"{v:.3f}"
        lines.append(f"| {r['solver']} | {r['model_calls']} | {r['model_s_per_clip']:.2f} | {r['decode_s_per_clip']:.2f} "
                     f"| {r['seconds_per_10s']:.2f} | {r['latency_model_s'] + r['latency_decode_s']:.2f} "
                     f"| {fmt(r['chord_accuracy'])} | {fmt(r['chord_accuracy_chance'])} | {ratio} "
                     f"| {fmt(r['no_chord_fraction'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--prompts", default=DEFAULT_PROMPTS)
    parser.add_argument("--group", default=DEFAULT_GROUP, help="prompt group to generate")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="first N prompts of the group (0 = all)")
    parser.add_argument("--budgets", default=DEFAULT_BUDGETS, help="Euler steps = model calls, comma-separated")
    parser.add_argument("--no-dopri5", action="store_true", help="skip the adaptive dopri5 run")
    parser.add_argument("--ceiling", default=DEFAULT_CEILING, help="report.json of the decode-ceiling clips")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--keep", help="keep the generated clips and reports in this folder")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for path in (args.checkpoint, args.prompts):
        if not Path(path).is_file():
            print(f"bench_sampling: {path} not found (run `dvc repro` or pass --checkpoint/--prompts)", file=sys.stderr)
            return 2

    import torch

    from model.sampling.generate import load_generator

    params = read_params(args.params)
    prompts = select_prompts(Path(args.prompts), args.group, args.limit)
    try:  # the settings `chordflow generate` uses: the checkpoint's, then params `generate`
        generator = load_generator(args.checkpoint, params.get("generate"))
        base_cfg = generator.params
    except RuntimeError as exc:  # state-dict mismatch: trained by an older version of model/
        print(f"bench_sampling: {args.checkpoint} does not fit the current model code (retrain it): "
              f"{str(exc).splitlines()[-1].strip()}", file=sys.stderr)
        return 2
    timed = TimedGenerator(generator)
    load_before = os.getloadavg()
    runs = [("euler", int(b)) for b in args.budgets.split(",")] + ([] if args.no_dopri5 else [(ADAPTIVE_SOLVER, 0)])
    with tempfile.TemporaryDirectory(prefix="bench_sampling_") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        prompts_file = work / "prompts.jsonl"
        prompts_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(prompts_file, "".join(json.dumps(p) + "\n" for p in prompts))
        rows = []
        for solver, steps in runs:
            rows.append(run_budget(timed, base_cfg, solver, steps, prompts_file, prompts,
                                   work / f"{solver}_{steps or 'adaptive'}", params, args.group))
            print(f"{solver} {rows[-1]['model_calls']} calls: {rows[-1]['seconds_per_10s']:.2f} s per 10 s, "
                  f"chord accuracy {rows[-1]['chord_accuracy']}", file=sys.stderr, flush=True)
        subset = ceiling_report(Path(args.ceiling), prompts, args.group, work / "ceiling_subset.json")
        ceiling = chord_scores(subset, params, "ceiling") if subset else None
    result = {"checkpoint": args.checkpoint, "group": args.group, "clips": len(prompts),
              "cfg_coef_all": base_cfg.cfg_coef_all, "cfg_coef_txt": base_cfg.cfg_coef_txt,
              "batch_size": base_cfg.batch_size, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "ceiling_chord_accuracy": ceiling["chord_accuracy"] if ceiling else None,
              "ceiling_clips": ceiling["clips_scored"] if ceiling else 0,
              "ceiling_source": f"{args.ceiling}, same {ceiling['clips_scored']} clips" if ceiling else "not found",
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "rows": rows}
    print(markdown(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
