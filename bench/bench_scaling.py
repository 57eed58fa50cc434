"""Per-stage throughput, and 1 vs 2 workers on each executor (parallel efficiency), on real stages.

    python bench/bench_scaling.py [--manifest manifests/demo.parquet] [--tracks 8]
        [--stages loudness,chords,drums,melody,latents] [--scaling-stage chords] [--scaling-tracks 16]
        [--tracks-per-shard 2] [--backends process,dask,slurm] [--params params.yaml] [--library-threads]
        [--json OUT]

1. Throughput: every stage of ``--stages`` runs with ``run_stage`` in this process (serial
   executor) over the first ``--tracks`` tracks of the manifest, with its params.yaml section:
   decode + extract + shard writing, in audio seconds per CPU second (this process's CPU, all its
   threads) and per wall second. The stage's one-off set-up (model load, plugin load) is timed
   apart, since it is paid once per worker, or once per task on SLURM. ``latents`` encodes the drum
   stems that ``drums`` just wrote, as in the pipeline. A stage that cannot be set up (e.g.
   DeepSalience weights missing) is listed as skipped with the reason.
2. Scaling: ``--scaling-stage`` over the first ``--scaling-tracks`` tracks, ``--tracks-per-shard``
   tracks per shard, on each backend with 1 and then 2 workers (SLURM: array parallelism 1 and 2,
   one CPU per task; only if ``sinfo`` answers). Wall time of ``run_stage`` and the executor
   start-up apart; speed-up = wall(1) / wall(2) and parallel efficiency = speed-up / 2, with and
   without start-up. Also the per-shard wall time on each backend minus the stage's own work,
   i.e. what each shard costs beyond its compute (task dispatch, process start, stage set-up):
   (run wall x workers - serial in-process wall of the same shards) / shards.

Every process runs numpy/BLAS/OpenMP with one thread (a 1-CPU task), unless ``--library-threads``.
Without the manifest (no demo corpus), a small corpus is rendered into a temporary folder first.
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
from typing import Any, Callable

#: Thread pools of numpy/BLAS, OpenMP (soxr, torch) and numba. One thread per worker process, as a
#: 1-CPU SLURM task gets, unless --library-threads: otherwise each worker spreads over every core
#: and "2 workers on 2 cores" would be oversubscribed. Set before numpy is imported; inherited by
#: the process pool, dask workers and SLURM tasks.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
ONE_THREAD = "--library-threads" not in sys.argv
if ONE_THREAD:
    for _name in THREAD_ENV:
        os.environ[_name] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.atomic import atomic_write_text  # noqa: E402
from pipeline.config import read_params_if_present  # noqa: E402
from pipeline.executors import ExecutorConfig, SlurmConfig, make_executor  # noqa: E402
from pipeline.planning import ShardingConfig  # noqa: E402
from pipeline.runner import run_stage  # noqa: E402
from pipeline.shard_task import cached_stage  # noqa: E402

DEFAULT_MANIFEST = "manifests/demo.parquet"
STAGES = ("loudness", "chords", "drums", "melody", "latents")
BACKENDS = ("process", "dask", "slurm")
WORKER_COUNTS = (1, 2)
#: Where ``make demo`` finds the DeepSalience weights when the shared folder is beside the checkout.
SHARED_DEEPSALIENCE = Path(__file__).resolve().parents[2] / "shared" / "weights" / "deepsalience"


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, CPU seconds, wall seconds) of ``fn()``."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = fn()
    return result, cpu_seconds() - cpu, time.perf_counter() - wall


def slurm_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def subset_manifest(source: Path, tracks: int, out: Path) -> tuple[Path, float]:
    """The first ``tracks`` rows of ``source`` with absolute paths; returns (path, audio seconds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.manifest import read_manifest

    table = read_manifest(source).slice(0, tracks)
    paths = [str(Path(p).resolve()) for p in table.column("path").to_pylist()]
    table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths))
    pq.write_table(table, out)
    return out, float(sum(table.column("duration").to_pylist()))


def render_corpus(folder: Path, clips: int) -> Path:
    """Render a small demo corpus and its manifest (used when no manifest is given)."""
    corpus = folder / "corpus"
    for command in (["chordflow", "corpus", "render", "--out", str(corpus), "--n", str(clips), "--no-progress"],
                    ["chordflow", "manifest", "--input", str(corpus / "audio"), "--root", str(corpus / "audio"),
                     "--out", str(folder / "corpus.parquet"), "--no-progress"]):
        subprocess.run(command, check=True, capture_output=True)
    return folder / "corpus.parquet"


def stage_params(params: dict, name: str, folder: Path) -> dict:
    section = dict(params.get(name) or {})
    if name == "latents":
        section["drums_dir"] = str(folder / "drums")  # the stems the drums stage wrote just before
    return section


def measure_stage(name: str, section: dict, manifest: Path, audio_s: float, folder: Path, tracks: int) -> dict:
    row: dict[str, Any] = {"stage": name, "tracks": tracks, "audio_s": audio_s}
    try:
        _, setup_cpu, setup_wall = timed(lambda: cached_stage(name, section))
    except Exception as exc:  # e.g. weights missing: this stage's figures are skipped, not the bench
        return {**row, "skipped": f"{type(exc).__name__}: {exc}"}
    sharding = ShardingConfig(tracks_per_shard=tracks)
    report, cpu, wall = timed(lambda: run_stage(name, section, manifest, folder / name, sharding, progress=False))
    if not report.ok or report.track_errors:
        return {**row, "skipped": f"{report.track_errors} track errors, failed shards {report.failed_shards}"}
    return {**row, "setup_s": setup_wall, "setup_cpu_s": setup_cpu, "cpu_s": cpu, "wall_s": wall,
            "audio_s_per_cpu_s": audio_s / cpu, "audio_s_per_wall_s": audio_s / wall,
            "cpu_s_per_audio_hour": cpu / audio_s * 3600}


def executor_config(backend: str, workers: int, folder: Path) -> ExecutorConfig:
    slurm = SlurmConfig(folder=str(folder / "submitit"), array_parallelism=workers, cpus_per_task=1, mem_gb=2.0,
                        time_min=15, poll_interval_s=0.1, sacct_interval_s=2.0)
    return ExecutorConfig(backend=backend, workers=workers, slurm=slurm)


def measure_scaling(backend: str, workers: int, stage: str, section: dict, manifest: Path, shards: int,
                    tracks_per_shard: int, folder: Path) -> dict:
    out = folder / f"{backend}_{workers}"
    started = time.perf_counter()
    with make_executor(executor_config(backend, workers, folder)) as executor:
        startup = time.perf_counter() - started
        report = run_stage(stage, section, manifest, out, ShardingConfig(tracks_per_shard=tracks_per_shard),
                           executor=executor, progress=False)
        run_s = time.perf_counter() - started - startup
    if not report.ok:
        raise RuntimeError(f"{backend} x{workers}: failed shards {report.failed_shards}")
    return {"backend": backend, "workers": workers, "shards": shards, "startup_s": startup, "run_s": run_s,
            "wall_s": startup + run_s}


def efficiency(rows: list[dict]) -> list[dict]:
    """Per backend: speed-up and parallel efficiency of 2 workers over 1, with and without start-up."""
    out = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        by = {r["workers"]: r for r in rows if r["backend"] == backend}
        if set(WORKER_COUNTS) <= set(by):
            one, two = by[1], by[2]
            out.append({"backend": backend, "speedup": one["run_s"] / two["run_s"],
                        "efficiency": one["run_s"] / two["run_s"] / 2,
                        "speedup_with_startup": one["wall_s"] / two["wall_s"],
                        "efficiency_with_startup": one["wall_s"] / two["wall_s"] / 2})
    return out


def markdown(result: dict) -> str:
    lines = [f"Per-stage throughput ({result['tracks']} tracks, {result['audio_s']:.0f} s of audio, serial, "
             f"{result['cpus']} CPUs, numpy/OpenMP threads: {result['library_threads']})", "",
             "| stage | set-up s | audio s / CPU s | audio s / wall s | CPU s per audio hour |", "|---|---:|---:|---:|---:|"]
    for r in result["stages"]:
        if "skipped" in r:
            lines.append(f"| {r['stage']} | skipped: {r['skipped']} | | | |")
        else:
            lines.append(f"| {r['stage']} | {r['setup_s']:.2f} | {r['audio_s_per_cpu_s']:.1f} | "
                         f"{r['audio_s_per_wall_s']:.1f} | {r['cpu_s_per_audio_hour']:.0f} |")
    s = result["scaling"]
    lines += ["", f"Scaling: stage {s['stage']}, {s['tracks']} tracks ({s['audio_s']:.0f} s) in {s['shards']} shards; "
                  f"serial in-process work {s['serial_work_s']:.2f} s", "",
              "| backend | workers | start-up s | run s | per-shard overhead s |", "|---|---:|---:|---:|---:|"]
    for r in s["runs"]:
        lines.append(f"| {r['backend']} | {r['workers']} | {r['startup_s']:.2f} | {r['run_s']:.2f} | "
                     f"{r['overhead_s_per_shard']:.2f} |")
    lines += ["", "| backend | speed-up 1->2 | efficiency | with start-up: speed-up | efficiency |", "|---|---:|---:|---:|---:|"]
    for e in s["efficiency"]:
        lines.append(f"| {e['backend']} | {e['speedup']:.2f} | {100 * e['efficiency']:.0f} % | "
                     f"{e['speedup_with_startup']:.2f} | {100 * e['efficiency_with_startup']:.0f} % |")
    lines += [f"skipped {name}: {why}" for name, why in s["skipped"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST, help="rendered here if missing")
    parser.add_argument("--tracks", type=int, default=8, help="tracks for the per-stage throughput")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--scaling-stage", default="chords")
    parser.add_argument("--scaling-tracks", type=int, default=16)
    parser.add_argument("--tracks-per-shard", type=int, default=2)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--library-threads", action="store_true",
                        help="leave numpy/OpenMP thread pools at their defaults (all cores per worker)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if SHARED_DEEPSALIENCE.is_dir():
        os.environ.setdefault("CHORDFLOW_DEEPSALIENCE_WEIGHTS", str(SHARED_DEEPSALIENCE))
    params = read_params_if_present(args.params)
    stages = args.stages.split(",") if args.stages else []
    if "latents" in stages and "drums" not in stages:
        parser.error("latents encodes the drums stage's stems: list drums before it")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        folder = Path(tmp)
        source = Path(args.manifest)
        if not source.is_file():
            print(f"{source} not found: rendering {max(args.tracks, args.scaling_tracks)} clips", file=sys.stderr)
            source = render_corpus(folder, max(args.tracks, args.scaling_tracks))
        manifest, audio_s = subset_manifest(source, args.tracks, folder / "throughput.parquet")
        tracks = min(args.tracks, _rows(manifest))
        stage_rows = []
        for name in stages:
            stage_rows.append(measure_stage(name, stage_params(params, name, folder / "stages"), manifest, audio_s,
                                            folder / "stages", tracks))
            print(f"{name}: {stage_rows[-1].get('audio_s_per_cpu_s', stage_rows[-1].get('skipped'))}",
                  file=sys.stderr, flush=True)

        scaling_manifest, scaling_audio = subset_manifest(source, args.scaling_tracks, folder / "scaling.parquet")
        n_tracks = _rows(scaling_manifest)
        shards = -(-n_tracks // args.tracks_per_shard)
        section = stage_params(params, args.scaling_stage, folder / "stages")
        # The stage's own work on these shards: serial, in this process, set-up already paid.
        cached_stage(args.scaling_stage, section)
        _, _, work_s = timed(lambda: run_stage(args.scaling_stage, section, scaling_manifest, folder / "serial",
                                               ShardingConfig(tracks_per_shard=args.tracks_per_shard), progress=False))
        skipped, runs = {}, []
        for backend in filter(None, args.backends.split(",")):
            if backend == "slurm" and not slurm_answers():
                skipped["slurm"] = "sinfo does not answer (slurm/cluster.sh start)"
                continue
            for workers in WORKER_COUNTS:
                runs.append(measure_scaling(backend, workers, args.scaling_stage, section, scaling_manifest, shards,
                                            args.tracks_per_shard, folder / "scaling"))
                print(f"{backend} x{workers}: {runs[-1]['run_s']:.2f} s", file=sys.stderr, flush=True)
        for r in runs:  # slot-seconds beyond the serial work, per shard
            r["overhead_s_per_shard"] = (r["run_s"] * r["workers"] - work_s) / shards
    result = {"cpus": os.cpu_count(), "library_threads": "1 per process" if ONE_THREAD else "library defaults",
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "tracks": tracks, "audio_s": audio_s, "stages": stage_rows,
              "scaling": {"stage": args.scaling_stage, "tracks": n_tracks, "audio_s": scaling_audio, "shards": shards,
                          "tracks_per_shard": args.tracks_per_shard, "serial_work_s": work_s, "runs": runs,
                          "efficiency": efficiency(runs), "skipped": skipped}}
    print(markdown(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def _rows(manifest: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(manifest).num_rows


if __name__ == "__main__":
    sys.exit(main())
