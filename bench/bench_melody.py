"""Melody stage speed: HCQT and both salience backends, per audio second, against the matmul rate.

    CHORDFLOW_DEEPSALIENCE_WEIGHTS=DIR python bench/bench_melody.py [--batches 1,2,4] [--chunk 500]
        [--threads 0] [--repeats 3] [--json OUT]

The network costs 12.6 GMAC per audio second (MACS_PER_AUDIO_SECOND). Each row reports the best
and median wall time of ``--repeats`` runs (the best is the least disturbed by other processes on a
shared machine), CPU seconds of this process (steadier than wall time when the machine is shared),
seconds per audio second, and the effective rate (nominal network MACs / time) against the fp32
matmul rate measured with torch (2048^3, same thread count), per wall second and per CPU second.
The FFT layer of the torch port does fewer multiply-adds than the nominal count, so its effective
rate can exceed the matmul rate. Rows: HCQT (librosa, 6 CQTs); torch port (default); torch with
direct convolution everywhere (what the FFT layer saves); keras reference. Ends with the
keras/torch ratio of the best rows, by wall time and by CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import numpy as np

from pipeline.atomic import atomic_write_text
from stages.melody.backends import load_salience_model, resolve_threads
from stages.melody.constants import MACS_PER_FRAME, SALIENCE_FRAME_RATE, SAMPLE_RATE


def timed(fn: Callable[[], object], repeats: int) -> dict:
    """Warm up once, then time ``repeats`` runs: best/median wall and median CPU seconds."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_best_s": min(walls), "wall_median_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def matmul_gmacs(threads: int, size: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """fp32 matmul rate with torch: (GMAC per wall second, GMAC per CPU second)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    result = timed(lambda: a @ b, repeats)
    return size ** 3 / result["wall_best_s"] / 1e9, size ** 3 / result["cpu_s"] / 1e9


def bench_hcqt(seconds: float, repeats: int) -> dict:
    from stages.melody.hcqt import compute_hcqt

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    row = {"what": "HCQT (librosa)", "batch": 1, "audio_s": seconds, **timed(lambda: compute_hcqt(audio), repeats)}
    return row


def bench_model(backend: str, batch: int, chunk: int, threads: int, repeats: int, direct: bool = False) -> dict:
    model = load_salience_model("multif0", backend, os.environ.get("CHORDFLOW_DEEPSALIENCE_WEIGHTS"), threads)
    if direct:  # the torch port without the FFT layer: every conv through oneDNN
        from torch import nn

        model.net.fft_convs = nn.ModuleDict()
    hcqt = np.random.default_rng(0).random((batch, 6, 360, chunk), dtype=np.float32)
    label = f"{backend} (direct conv)" if direct else backend
    return {"what": label, "batch": batch, "audio_s": batch * chunk / SALIENCE_FRAME_RATE,
            **timed(lambda: model.predict(hcqt), repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,2,4", help="windows per model call")
    parser.add_argument("--chunk", type=int, default=500, help="frames per window (500 = 5.8 s)")
    parser.add_argument("--threads", type=int, default=0, help="0 = all available cores")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="torch,torch-direct,keras")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    threads = resolve_threads(args.threads)
    load_before = os.getloadavg()
    peak, peak_cpu = matmul_gmacs(threads)
    rows = [bench_hcqt(30.0, args.repeats)]
    for backend in args.backends.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            rows.append(bench_model(backend.replace("-direct", ""), batch, args.chunk, threads, args.repeats,
                                    direct=backend.endswith("-direct")))
    for row in rows:
        row["s_per_audio_s"] = row["wall_best_s"] / row["audio_s"]
        row["cpu_s_per_audio_s"] = row["cpu_s"] / row["audio_s"]
        if row["what"] != "HCQT (librosa)":
            macs = MACS_PER_FRAME * row["audio_s"] * SALIENCE_FRAME_RATE / 1e9
            row["gmacs"] = macs / row["wall_best_s"]
            row["of_matmul_peak"] = row["gmacs"] / peak
            row["gmacs_per_cpu_s"] = macs / row["cpu_s"]
            row["of_matmul_per_cpu_s"] = row["gmacs_per_cpu_s"] / peak_cpu
    best, best_cpu = {}, {}
    for name in ("torch", "keras"):
        mine = [r for r in rows if r["what"] == name]
        if mine:
            best[name] = min(r["s_per_audio_s"] for r in mine)
            best_cpu[name] = min(r["cpu_s_per_audio_s"] for r in mine)
    summary = {"threads": threads, "cpus": os.cpu_count(), "matmul_gmacs": peak, "matmul_gflops": 2 * peak,
               "matmul_gmacs_per_cpu_s": peak_cpu, "loadavg_before": load_before,
               "loadavg_after": os.getloadavg(), "rows": rows}
    if len(best) == 2:
        summary["keras_over_torch"] = best["keras"] / best["torch"]
        summary["keras_over_torch_cpu"] = best_cpu["keras"] / best_cpu["torch"]

    print(f"threads {threads} of {os.cpu_count()} cores; fp32 matmul {peak:.1f} GMAC/s ({2 * peak:.0f} GFLOP/s) wall, "
          f"{peak_cpu:.1f} GMAC per CPU-s; load average {load_before[0]:.1f} -> {summary['loadavg_after'][0]:.1f}")
    print("| what | batch | audio s | best wall s | median wall s | CPU s | s / audio s | CPU s / audio s "
          "| GMAC/s | of matmul | GMAC/CPU-s | of matmul/CPU-s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = (f"{r['gmacs']:.1f} | {r['of_matmul_peak']:.0%} | {r['gmacs_per_cpu_s']:.1f} | "
                f"{r['of_matmul_per_cpu_s']:.0%}") if "gmacs" in r else "- | - | - | -"
        print(f"| {r['what']} | {r['batch']} | {r['audio_s']:.1f} | {r['wall_best_s']:.2f} | {r['wall_median_s']:.2f} | "
              f"{r['cpu_s']:.2f} | {r['s_per_audio_s']:.3f} | {r['cpu_s_per_audio_s']:.3f} | {rate} |")
    if "keras_over_torch" in summary:
        print(f"best torch {best['torch']:.3f} s/audio-s, best keras {best['keras']:.3f} s/audio-s: torch is "
              f"{summary['keras_over_torch']:.2f}x faster (wall), {summary['keras_over_torch_cpu']:.2f}x (CPU time)")
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
