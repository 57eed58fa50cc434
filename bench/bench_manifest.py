"""Benchmark ``build_manifest``: files per second, serial and with a worker pool.

    python bench/bench_manifest.py [--n 200] [--seconds 2] [--workers 1 2] [--json OUT]

Builds ``--n`` small sine-tone files cycling through the formats (wav, flac, mp3, ogg, m4a; m4a
only when the ffmpeg binary is installed) in a temporary folder, then times a full manifest
build (discovery, probe, hash) for each worker count, plus a serial run per format. Each run
is timed once. The first serial run is "cold" (it imports torch for the m4a files); the others
run warm in this process, while every pool run starts its worker processes afresh (their
start-up, and torch's import in each worker that meets an m4a file, are part of the figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.atomic import atomic_write_text
from pipeline.manifest import build_manifest

SAMPLE_RATE = 44100
WRITE_BLOCK_FRAMES = 1 << 16
SOUNDFILE_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
                     "ogg": ("OGG", "VORBIS")}


def make_files(folder: Path, n: int, seconds: float) -> dict[str, int]:
    """Write ``n`` stereo tones of distinct pitch, cycling through formats; returns counts per format."""
    formats = list(SOUNDFILE_FORMATS) + (["m4a"] if shutil.which("ffmpeg") else [])
    counts = dict.fromkeys(formats, 0)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    for index in range(n):
        fmt = formats[index % len(formats)]
        wave = (0.3 * np.sin(2 * np.pi * (110.0 + index) * t)).astype(np.float32)
        stereo = np.stack([wave, wave], axis=1)
        path = folder / fmt / f"track{index:04d}.{fmt}"
        path.parent.mkdir(exist_ok=True)
        if fmt == "m4a":
            source = folder / "source.wav"
            sf.write(source, stereo, SAMPLE_RATE)
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-c:a", "aac",
                            str(path)], check=True)
            source.unlink()
        else:
            file_format, subtype = SOUNDFILE_FORMATS[fmt]
            # In blocks: libsndfile 1.2.2 segfaults writing > ~1 min of Ogg Vorbis in one call.
            with sf.SoundFile(path, "w", SAMPLE_RATE, 2, subtype, format=file_format) as handle:
                for start in range(0, len(stereo), WRITE_BLOCK_FRAMES):
                    handle.write(stereo[start : start + WRITE_BLOCK_FRAMES])
        counts[fmt] += 1
    return counts


def time_build(inputs: list[Path], workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    manifest, rejects = build_manifest(inputs, workers=workers)
    elapsed = time.perf_counter() - start
    if rejects.num_rows:
        raise RuntimeError(f"benchmark files were rejected: {rejects.to_pylist()[:3]}")
    return elapsed, manifest.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of files")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each file")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_manifest_") as tmp:
        folder = Path(tmp)
        counts = make_files(folder, args.n, args.seconds)
        # The first run warms the OS file cache and this process's imports (torch, for m4a).
        elapsed, rows = time_build([folder], workers=1)
        runs = [{"set": "mixed, cold process", "workers": 1, "files": rows, "seconds": elapsed}]
        for workers in args.workers:
            elapsed, rows = time_build([folder], workers)
            runs.append({"set": "mixed", "workers": workers, "files": rows, "seconds": elapsed})
        for fmt in counts:
            elapsed, rows = time_build([folder / fmt], workers=1)
            runs.append({"set": fmt, "workers": 1, "files": rows, "seconds": elapsed})

    print(f"manifest build, {args.n} files of {args.seconds:g} s, 44.1 kHz stereo; "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print()
    print("| files | workers | n | seconds | files/s |")
    print("|---|---|---|---|---|")
    for run in runs:
        run["files_per_s"] = run["files"] / run["seconds"]
        print(f"| {run['set']} | {run['workers']} | {run['files']} | {run['seconds']:.2f} | {run['files_per_s']:.1f} |")
    if args.json is not None:
        figures = {"n": args.n, "seconds_per_file": args.seconds, "cpus": os.cpu_count(), "runs": runs}
        atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
