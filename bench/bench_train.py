"""Training throughput of the demo model against this machine's fp32 matmul rate.

    python bench/bench_train.py [--steps 20] [--warmup 3] [--params params.yaml] [--threads 0]
                                [--matmul-size 2048] [--set model.frames_per_token=2 ...] [--json OUT]

* fp32 matmul rate: ``torch.matmul`` of two square float32 matrices (``--matmul-size``), best of a
  few runs, GFLOP/s = 2 n^3 / seconds, at the thread count the training uses.
* training: a :class:`model.training.train.Trainer` built from the ``model`` and ``train`` sections of
  params.yaml on the demo features (paths as in dvc.yaml), writing into a temporary folder. It
  warms up with ``Trainer.run(stop_at=warmup)`` (text embeddings cached, allocator warm), then
  ``--steps`` real steps (forward + backward + AdamW + EMA) are timed one by one: steps/s from the
  total, tokens/s = steps/s x batch x tokens per crop. FLOPs per step are counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on one real step after the timed ones (matmuls,
  attention and convolutions of forward and backward; elementwise work is not counted, as in
  every MFU figure), so achieved GFLOP/s = FLOPs per step x steps/s, and its fraction of the matmul
  rate is the utilisation (issue 19 target: >= 75 %; bench/report/train_speed.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.device import cpu_has_native_bfloat16  # noqa: E402
from pipeline.atomic import atomic_write_text  # noqa: E402
from pipeline.config import load_section, read_params  # noqa: E402

DEFAULT_STEPS = 20
DEFAULT_WARMUP = 3
MATMUL_SIZE = 2048
MATMUL_REPEATS = 5
#: The demo feature paths, as dvc.yaml passes them to ``chordflow train``.
DEMO_PATHS = {"manifest": "manifests/demo.parquet", "metadata": "data/metadata.jsonl",
              "latents": "data/features/latents", "chords": "data/features/chords",
              "melody": "data/features/melody", "stats": "data/features/latents_stats.json"}


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = MATMUL_REPEATS, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-``repeats`` matmul rate (GFLOP/s) in ``dtype`` at torch's current thread count."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)  # warm-up: thread pool start, page faults of the output
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best / 1e9


def with_overrides(params: dict, overrides: list[tuple[str, ...]]) -> dict:
    """``params`` with ``("section.key", "json value")`` pairs applied (model and train sections only)."""
    params = {**params}
    for item in overrides:
        if len(item) != 2 or item[0].count(".") != 1 or item[0].split(".")[0] not in ("model", "train"):
            raise ValueError(f"--set {'='.join(item)}: expected model.KEY=VALUE or train.KEY=VALUE")
        (section, key), text = item[0].split("."), item[1]
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        params[section] = {**(params.get(section) or {}), key: value}
    return params


def count_step_flops(trainer) -> int:
    """FLOPs of one real training step (forward + backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step()
    return int(counter.get_total_flops())


def build_trainer(params: dict, out_dir: str, paths: dict[str, str]):
    """A Trainer on the demo features with the params' model/train sections; no mid-run checkpoints
    or validation, so the timed steps are training steps only."""
    from model.config import ModelParams, TrainConfig
    from model.training.train import Trainer, TrainPaths

    model_params = load_section(ModelParams, "model", params)
    cfg = load_section(TrainConfig, "train", params)
    cfg = dataclasses.replace(cfg, eval_every=0, checkpoint_every=10 ** 9)
    return Trainer(TrainPaths(out_dir=out_dir, **paths), model_params, cfg)


def measure(params: dict, steps: int, warmup: int, paths: dict[str, str], matmul_size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        trainer = build_trainer(params, tmp, paths)
        threads = torch.get_num_threads()  # after the trainer applied train.threads
        peak = matmul_gflops(matmul_size)
        # Every training description encoded once, so no timed step runs the text encoder.
        trainer.text_encoder.encode(sorted({d for d in trainer.train_source.descriptions.values() if d}))
        trainer.run(progress=False, stop_at=warmup)
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - started)
        flops = count_step_flops(trainer)
    cfg, model_config = trainer.cfg, trainer.model_config
    tokens_per_step = cfg.batch_size * trainer.segment_frames // model_config.frames_per_token
    steps_per_s = steps / sum(times)
    achieved = flops * steps_per_s / 1e9
    return {
        "threads": threads, "cpus": os.cpu_count(), "matmul_size": matmul_size, "matmul_gflops": peak,
        "device": str(trainer.device), "parameters": trainer.model.parameter_count(),
        "model": {k: getattr(model_config, k) for k in ("dim", "layers", "heads", "frames_per_token")},
        "batch_size": cfg.batch_size, "segment_frames": trainer.segment_frames, "tokens_per_step": tokens_per_step,
        "warmup_steps": warmup, "timed_steps": steps, "seconds": sum(times),
        "step_s_median": statistics.median(times), "step_s_best": min(times),
        "steps_per_s": steps_per_s, "tokens_per_s": tokens_per_step * steps_per_s,
        "flops_per_step": flops, "achieved_gflops": achieved, "fraction_of_matmul": achieved / peak,
        "loadavg": os.getloadavg(), "losses": trainer.losses[:warmup + steps],
    }


def measure_bfloat16(params: dict, fp32: dict, steps: int, warmup: int, paths: dict[str, str],
                     matmul_size: int) -> dict:
    """The same run with bf16 autocast on the CPU (``train.mixed_precision_cpu``): its rate against the
    fp32 and the bf16 matmul rates, and its loss trace against the fp32 run's (same batches, same init)."""
    run = measure(with_overrides(params, [("train.mixed_precision_cpu", "true")]), steps, warmup, paths, matmul_size)
    peak_bf16 = matmul_gflops(matmul_size, dtype=torch.bfloat16)
    achieved = fp32["flops_per_step"] * run["steps_per_s"] / 1e9  # the same model: count the fp32 step's FLOPs
    relative = [abs(a - b) / abs(b) for a, b in zip(run["losses"], fp32["losses"])]
    return {
        "steps_per_s": run["steps_per_s"], "tokens_per_s": run["tokens_per_s"], "speedup": run["steps_per_s"] / fp32["steps_per_s"],
        "matmul_gflops": run["matmul_gflops"], "matmul_gflops_bfloat16": peak_bf16, "achieved_gflops": achieved,
        "fraction_of_matmul": achieved / run["matmul_gflops"], "fraction_of_bfloat16_matmul": achieved / peak_bf16,
        "losses": run["losses"], "loss_max_relative_difference": max(relative),
        "loss_mean_last_10": statistics.fmean(run["losses"][-10:]),
        "loss_mean_last_10_float32": statistics.fmean(fp32["losses"][-10:]),
    }


def markdown(r: dict) -> str:
    return "\n".join([
        f"fp32 matmul ({r['matmul_size']}^3, {r['threads']} threads of {r['cpus']} CPUs): "
        f"{r['matmul_gflops']:.1f} GFLOP/s",
        f"model d={r['model']['dim']} x {r['model']['layers']} layers ({r['parameters'] / 1e6:.2f} M parameters), "
        f"batch {r['batch_size']} x {r['tokens_per_step'] // r['batch_size']} tokens, on {r['device']}"
        + (f" (overrides: {', '.join(r['overrides'])})" if r.get("overrides") else ""),
        "",
        "| steps/s | tokens/s | GFLOP/step | achieved GFLOP/s | of fp32 matmul |",
        "|---:|---:|---:|---:|---:|",
        f"| {r['steps_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['flops_per_step'] / 1e9:.1f} | "
        f"{r['achieved_gflops']:.1f} | {100 * r['fraction_of_matmul']:.0f} % |",
    ] + (["", bfloat16_sentence(r["bfloat16"])] if r.get("bfloat16") else []))


def bfloat16_sentence(b: dict) -> str:
    """The bf16 autocast run in one markdown sentence (also used by bench/report.py)."""
    return (f"bf16 autocast on the CPU (`train.mixed_precision_cpu: true`): {b['steps_per_s']:.2f} steps/s "
            f"(x{b['speedup']:.2f}), {b['achieved_gflops']:.1f} GFLOP/s = {100 * b['fraction_of_matmul']:.0f} % of the "
            f"fp32 matmul rate ({b['matmul_gflops']:.1f}), {100 * b['fraction_of_bfloat16_matmul']:.0f} % of the bf16 "
            f"matmul rate ({b['matmul_gflops_bfloat16']:.1f}); losses of the same steps within "
            f"{100 * b['loss_max_relative_difference']:.3f} % of fp32 (mean of the last 10: "
            f"{b['loss_mean_last_10']:.4f} vs {b['loss_mean_last_10_float32']:.4f}).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed steps first")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, default=0, help="override train.threads (0: keep params)")
    parser.add_argument("--matmul-size", type=int, default=MATMUL_SIZE)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a model/train param, e.g. --set model.frames_per_token=2")
    parser.add_argument("--bfloat16", choices=("auto", "on", "off"), default="auto",
                        help="also time bf16 autocast on the CPU (auto: where the CPU has AVX-512 BF16 or AMX)")
    parser.add_argument("--json", help="also write the figures here")
    for name, default in DEMO_PATHS.items():
        parser.add_argument(f"--{name}", default=default)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    params = read_params(args.params)
    overrides = [("train.threads", str(args.threads))] if args.threads else []
    try:
        params = with_overrides(params, overrides + [tuple(item.split("=", 1)) for item in args.set])
    except ValueError as exc:
        parser.error(str(exc))
    paths = {name: getattr(args, name) for name in DEMO_PATHS}
    missing = [p for name, p in paths.items() if not Path(p).exists()]
    if missing:
        print(f"bench_train: demo features missing ({', '.join(missing)}): run `dvc repro train` first",
              file=sys.stderr)
        return 2
    result = {**measure(params, args.steps, args.warmup, paths, args.matmul_size), "overrides": args.set}
    if result["device"] == "cpu" and (args.bfloat16 == "on" or (args.bfloat16 == "auto" and cpu_has_native_bfloat16())):
        result["bfloat16"] = measure_bfloat16(params, result, args.steps, args.warmup, paths, args.matmul_size)
    print(markdown(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
