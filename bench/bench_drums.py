"""Real-time factor of each drum separator (seconds of compute per second of audio; < 1 is faster
than real time) on this machine's CPU, and on CUDA when one is present.

    python bench/bench_drums.py [--seconds 20] [--tracks 4] [--batch-sizes 1,4] [--threads N]
                                [--demucs-model htdemucs] [--weights-dir DIR] [--json OUT]

* ``hpss``: the stage's default settings on a synthetic drum loop + chords (32 kHz mono).
* ``demucs``: the pretrained model if its weights are on disk, else a randomly initialised model of
  the same class and default size (``HTDemucs()``, the htdemucs architecture; speed does not depend
  on the weight values, and the row says which). Each track alone (``separate``), and all tracks in
  one call (``separate_many``: segments of every track share forward passes), per batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_write_text
from stages.drums.config import DemucsConfig, HpssConfig
from stages.drums.constants import CODEC_SAMPLE_RATE, DEMUCS_SAMPLE_RATE
from stages.drums.demucs_separator import DemucsSeparator, resolve_device
from stages.drums.demucs_weights import DemucsWeightsMissing, locate_weights, plan_bag, save_to_local_repo
from stages.drums.hpss import HpssSeparator
from stages.drums.synthetic import drum_loop_mix

#: Segment of the published htdemucs model (seconds).
HTDEMUCS_SEGMENT = Fraction(39, 5)


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_hpss(tracks: list[np.ndarray]) -> dict:
    separator = HpssSeparator(HpssConfig(), CODEC_SAMPLE_RATE, 1)
    audio_s = sum(t.shape[1] for t in tracks) / CODEC_SAMPLE_RATE
    wall = timed(lambda: [separator.separate(t, CODEC_SAMPLE_RATE) for t in tracks])
    return {"separator": "hpss", "weights": "none", "device": "cpu", "mode": "per track", "batch_size": None,
            "segment_s": None, "audio_s": audio_s, "wall_s": wall, "rtf": wall / audio_s}


def demucs_config(args, folder: Path) -> tuple[DemucsConfig, str]:
    """The real weights when on disk, else a random-init htdemucs-sized model in a temp repo."""
    try:
        locate_weights(plan_bag(args.demucs_model, args.weights_dir), args.weights_dir)
        return DemucsConfig(model=args.demucs_model, weights_dir=args.weights_dir), "pretrained"
    except DemucsWeightsMissing:
        from demucs.htdemucs import HTDemucs

        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = HTDemucs(sources=["drums", "bass", "other", "vocals"], segment=HTDEMUCS_SEGMENT)
        save_to_local_repo(model, folder, "b0000000", bag="random_htdemucs")
        params = sum(p.numel() for p in model.parameters()) / 1e6
        return DemucsConfig(model="random_htdemucs", weights_dir=str(folder)), f"random init ({params:.1f} M params)"


def bench_demucs(args, tracks: list[np.ndarray], device: str, folder: Path) -> list[dict]:
    config, weights = demucs_config(args, folder)
    audio_s = sum(t.shape[1] for t in tracks) / DEMUCS_SAMPLE_RATE
    rows = []
    for batch_size in args.batch_sizes:
        separator = DemucsSeparator(DemucsConfig(**{**config.__dict__, "device": device, "batch_size": batch_size,
                                                         "cpu_batch_size": batch_size}))
        separator.setup()
        separator.separate(tracks[0][:, : DEMUCS_SAMPLE_RATE], DEMUCS_SAMPLE_RATE)  # warm-up (allocations, cuDNN)
        segment_s = separator.segment_length / DEMUCS_SAMPLE_RATE
        for mode, run in (("per track", lambda: [separator.separate(t, DEMUCS_SAMPLE_RATE) for t in tracks]),
                          ("batched across tracks", lambda: separator.separate_many(tracks, DEMUCS_SAMPLE_RATE))):
            wall = timed(run)
            rows.append({"separator": f"demucs/{config.model}", "weights": weights, "device": device, "mode": mode,
                         "batch_size": batch_size, "segment_s": round(segment_s, 3), "audio_s": audio_s,
                         "wall_s": wall, "rtf": wall / audio_s})
            print(f"  {rows[-1]['separator']} {device} {mode} batch {batch_size}: RTF {rows[-1]['rtf']:.3f}",
                  file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each track")
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--batch-sizes", default="1,4", help="Demucs segments per forward pass")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--demucs-model", default="htdemucs")
    parser.add_argument("--weights-dir")
    parser.add_argument("--skip-demucs", action="store_true")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)

    mixes = [drum_loop_mix(sr=DEMUCS_SAMPLE_RATE, seconds=args.seconds, seed=i).mix for i in range(args.tracks)]
    stereo = [np.stack([m, m]) for m in mixes]
    codec_rate = [drum_loop_mix(sr=CODEC_SAMPLE_RATE, seconds=args.seconds, seed=i).mix[None] for i in range(args.tracks)]
    rows = [bench_hpss(codec_rate)]
    if not args.skip_demucs:
        devices = ["cpu"] + (["cuda"] if resolve_device("auto") == "cuda" else [])
        with tempfile.TemporaryDirectory() as folder:
            for device in devices:
                rows += bench_demucs(args, stereo, device, Path(folder))

    print(f"\n{args.tracks} tracks x {args.seconds:.0f} s, CPU threads {torch.get_num_threads()} "
          f"(of {os.cpu_count()} cores)\n")
    print("| separator | weights | device | mode | batch | segment (s) | audio (s) | wall (s) | RTF |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['separator']} | {r['weights']} | {r['device']} | {r['mode']} | {r['batch_size'] or '-'} | "
              f"{r['segment_s'] or '-'} | {r['audio_s']:.0f} | {r['wall_s']:.2f} | {r['rtf']:.3f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
