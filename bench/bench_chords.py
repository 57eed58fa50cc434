"""Throughput of the chords stage, and its overhead over calling Chordino directly.

    python bench/bench_chords.py [--manifest manifests/demo.parquet] [--limit N] [--workers 2] [--reference] [--json OUT]

First ``decode + extract``: each track decoded at the stage's rate (mono) and extracted, as a worker
does it (the figure issue 19 compares). Then every track is decoded once (not timed) and, on the
same samples:

* ``plugin``: ``vamp.collect(samples, sr, "nnls-chroma:chordino")`` alone, at the stage's framing;
* ``extract``: ``ChordsExtractor.extract`` (padding + plugin + label normalisation + boundary
  refinement + frame indices), and the same without refinement;

and end to end (decode + extract + shard writing) with ``run_stage`` on the serial executor and on
the process executor with ``--workers`` workers. ``--reference`` adds what chordflow replaces: AudioCraft's
extract_chords.py way, ``chord_extractor``'s ``Chordino().extract_many`` (librosa.load at 22.05 kHz,
the plugin's 16384/2048 framing) with one extractor and one preprocessor, as a whole process.
Figures are audio seconds per CPU second (all processes' CPU, the pool's included) and per wall
second; run with OMP_NUM_THREADS=1 on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.atomic import atomic_write_text  # noqa: E402
from pipeline.audio import load_audio  # noqa: E402
from pipeline.executors import ExecutorConfig, make_executor  # noqa: E402
from pipeline.manifest import read_manifest  # noqa: E402
from pipeline.planning import ShardingConfig  # noqa: E402
from pipeline.runner import run_stage  # noqa: E402
from pipeline.stage import create_stage  # noqa: E402
from stages.chords.chordino import PLUGIN_KEY, load_vamp  # noqa: E402

DEFAULT_MANIFEST = "manifests/demo.parquet"
TRACKS_PER_SHARD = 8
#: The reference (issue 19): chord_extractor as AudioCraft's extract_chords.py calls it, one worker
#: each; the recipe lives in bench_side_by_side.py.
SIDE_BY_SIDE = Path(__file__).resolve().parent / "bench_side_by_side.py"


def cpu_seconds() -> float:
    """CPU time of this process plus its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of ``fn()``."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    fn()
    return cpu_seconds() - cpu, time.perf_counter() - wall


def row(name: str, audio_s: float, cpu_s: float, wall_s: float, reference_cpu_s: float | None = None) -> dict:
    return {
        "what": name,
        "audio_s": audio_s,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "audio_s_per_cpu_s": audio_s / cpu_s,
        "audio_s_per_wall_s": audio_s / wall_s,
        "overhead_vs_plugin": None if reference_cpu_s is None else cpu_s / reference_cpu_s - 1.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, help="use the first N tracks")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="also time chord_extractor's extract_many (issue 19)")
    parser.add_argument("--json", help="write the figures as JSON here")
    args = parser.parse_args()

    table = read_manifest(args.manifest)
    if args.limit:
        table = table.slice(0, args.limit)
    stage = create_stage("chords", {})
    stage.setup()
    rate = stage.config.sample_rate
    paths = table.column("path").to_pylist()
    decoded: list = []

    def decode_and_extract() -> None:
        for path in paths:
            decoded.append(load_audio(path, sample_rate=rate, channels=stage.channels)[0])
            stage.extract(decoded[-1], rate)

    decode_cpu, decode_wall = timed(decode_and_extract)
    audio_s = sum(s.shape[1] for s in decoded) / rate
    print(f"{len(decoded)} tracks, {audio_s:.1f} s of audio, {os.cpu_count()} CPUs", file=sys.stderr)
    results = []
    if args.reference:
        listing = Path(tempfile.mkdtemp(prefix="bench_chords_")) / "files.txt"
        listing.write_text("\n".join(paths) + "\n")
        cpu, wall = timed(lambda: subprocess.run(
            [sys.executable, str(SIDE_BY_SIDE), "--reference", "chords", "--workers", "1", "--files", str(listing)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        results.append(row("reference: chord_extractor extract_many (1+1 workers, whole process)", audio_s, cpu, wall))
    results.append(row("stage decode + extract", audio_s, decode_cpu, decode_wall))

    vamp = load_vamp()
    chordino = stage.config.chordino
    parameters = chordino.vamp_parameters()
    plugin_cpu, plugin_wall = timed(lambda: [vamp.collect(s[0], rate, PLUGIN_KEY, parameters=parameters, block_size=chordino.block_size,
                                                          step_size=chordino.step_size) for s in decoded])
    results.append(row("plugin alone (vamp.collect)", audio_s, plugin_cpu, plugin_wall))
    cpu, wall = timed(lambda: [stage.extract(s, rate) for s in decoded])
    results.append(row("stage extract", audio_s, cpu, wall, plugin_cpu))
    plain = create_stage("chords", {"refine": {"enabled": False}})
    plain.setup()
    cpu, wall = timed(lambda: [plain.extract(s, rate) for s in decoded])
    results.append(row("stage extract, no refinement", audio_s, cpu, wall, plugin_cpu))

    sharding = ShardingConfig(tracks_per_shard=TRACKS_PER_SHARD)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "bench.parquet"
        import pyarrow.parquet as pq

        pq.write_table(table, manifest)
        cpu, wall = timed(lambda: run_stage("chords", {}, manifest, Path(tmp) / "serial", sharding, progress=False))
        results.append(row("run_stage serial (decode+extract+write)", audio_s, cpu, wall, plugin_cpu))

        def pooled() -> None:
            with make_executor(ExecutorConfig(backend="process", workers=args.workers)) as executor:
                run_stage("chords", {}, manifest, Path(tmp) / "pool", sharding, executor=executor, progress=False)

        cpu, wall = timed(pooled)
        results.append(row(f"run_stage process x{args.workers} (incl. worker start)", audio_s, cpu, wall, plugin_cpu))

    print("| what | audio s / CPU s | audio s / wall s | CPU overhead vs plugin |")
    print("|---|---|---|---|")
    for r in results:
        overhead = "" if r["overhead_vs_plugin"] is None else f"{100 * r['overhead_vs_plugin']:+.1f} %"
        print(f"| {r['what']} | {r['audio_s_per_cpu_s']:.1f} | {r['audio_s_per_wall_s']:.1f} | {overhead} |")
    if args.json:
        payload = {"tracks": len(decoded), "audio_s": audio_s, "cpus": os.cpu_count(), "results": results}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
