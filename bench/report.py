"""One benchmark report from one command: run every bench/bench_*.py, write markdown + PNG plots.

    python bench/report.py --out bench/report [--only train,sampling] [--no-run]
        [--dvc-repro-seconds S | --run-dvc] [--start-slurm] [--checkpoint CKPT] [--hours 16000]

Each benchmark runs as its own process with its quick settings (``QUICK_ARGS``) and ``--json``;
its output goes to ``OUT/logs/<name>.log`` and its figures to ``OUT/json/<name>.json``. A benchmark
that fails is listed with its log, the others still report. ``--no-run`` rebuilds the report from
the JSON already in OUT. ``OUT/README.md`` then holds: per-stage throughput (audio seconds per CPU
second), 1 vs 2 workers on the process, dask and SLURM executors (parallel efficiency), executor
overhead per shard, the chords and melody stages side by side with the research code they replace,
end-to-end ``dvc repro`` time, training tokens/s against the fp32 matmul rate,
sampling time per 10 s at several model-call budgets with the chord adherence, and a plan for a
16,000-hour run computed from the measured per-stage costs (``bench/report_plan.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_train import bfloat16_sentence  # noqa: E402
from bench.report_plan import plan_markdown, plan_run  # noqa: E402
from bench.report_plots import write_plots  # noqa: E402
from pipeline.atomic import atomic_write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Each benchmark's quick settings: the whole report runs in about 10 minutes on 2 cores.
QUICK_ARGS: dict[str, list[str]] = {
    "manifest": ["--n", "40", "--seconds", "2", "--workers", "1", "2"],
    "executors": ["--tasks", "16"],
    "chords": ["--limit", "4"],
    "drums": ["--seconds", "10", "--tracks", "2", "--batch-sizes", "1"],
    "latents": ["--seconds", "5", "--batch", "1", "--repeat", "1"],
    "melody": ["--batches", "1", "--repeats", "1", "--backends", "torch"],
    "scaling": ["--tracks", "8", "--scaling-tracks", "24", "--tracks-per-shard", "3"],
    "train": ["--steps", "20", "--warmup", "3"],
    "sampling": ["--limit", "12"],
    "side_by_side": [],  # 28 real tracks (8 for melody), ~4 min
}
BENCH_TIMEOUT_S = 900
SHARED_DEEPSALIENCE = ROOT.parent / "shared" / "weights" / "deepsalience"


def bench_names() -> list[str]:
    """The benchmarks of the report, in the order of QUICK_ARGS. The others (studio, long-form,
    partial spans, judged controls, JASCO full size) take from minutes to an hour each and write
    their own reports in bench/report/*.md: run them by hand."""
    found = {p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py")}
    return [n for n in QUICK_ARGS if n in found]


def bench_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if SHARED_DEEPSALIENCE.is_dir():  # as the Makefile does
        env.setdefault("CHORDFLOW_DEEPSALIENCE_WEIGHTS", str(SHARED_DEEPSALIENCE))
    return env


def run_bench(name: str, out: Path, progress, extra: list[str] = ()) -> dict[str, Any]:
    """Run one benchmark; returns its command, exit code, wall time and log path."""
    json_path, log_path = out / "json" / f"{name}.json", out / "logs" / f"{name}.log"
    json_path.unlink(missing_ok=True)
    command = [sys.executable, f"bench/bench_{name}.py", *QUICK_ARGS.get(name, []), *extra, "--json", str(json_path)]
    progress(f"{name}: {' '.join(command[1:])}")
    started = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(command, cwd=ROOT, env=bench_env(), stdout=log, stderr=subprocess.STDOUT,
                                timeout=BENCH_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.perf_counter() - started
    progress(f"{name}: exit {rc} in {wall:.0f} s")
    return {"name": name, "command": "python " + " ".join(command[1:]).replace(str(out), "OUT"), "rc": rc,
            "wall_s": round(wall, 1), "finished": _now(), "log": str(log_path.relative_to(out)),
            "json": str(json_path.relative_to(out)) if json_path.is_file() else None}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def slurm_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def time_dvc_repro(progress) -> float:
    """``dvc repro`` in a fresh clone of this repository's HEAD (corpus to evaluation); seconds."""
    with tempfile.TemporaryDirectory(prefix="bench_dvc_") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        progress(f"dvc repro in {clone} (~15-20 min)")
        env = {**bench_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        started = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=clone, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


# ----------------------------------------------------------------------------- markdown
def load(out: Path, name: str) -> Any:
    path = out / "json" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def machine_now() -> dict[str, Any]:
    """What the benchmarks ran on: recorded in OUT/json/machine.json when they run, reused by --no-run."""
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
                       f"({torch.get_num_threads()} threads), Python {platform.python_version()}",
            "commit": commit.strip() or "?", "date": _now(), "loadavg": round(os.getloadavg()[0], 1)}


def machine_section(machine: dict) -> list[str]:
    return ["## Machine", "",
            f"{machine['machine']}; commit {machine['commit']}; {machine['date']}. "
            f"Load average at the end: {machine['loadavg']:.1f}.", ""]


def side_by_side_section(figures: dict | None) -> list[str]:
    """The chords and melody stages against the scripts they replace (``bench/bench_side_by_side.py``)."""
    from bench.bench_side_by_side import markdown

    lines = ["## Side by side with the research code", ""]
    if not figures:
        return lines + ["bench_side_by_side did not produce figures (see its log).", ""]
    return lines + [markdown(figures).rstrip(), "",
                    "Targets (issue 19): melody >= 2x the original per wall second with >= 99.5 % of frames the "
                    "same melody index as the float32 path as it was; chords >= 1.5x AudioCraft's script with "
                    "majmin >= 0.92 on the demo corpus.", ""]


def stage_section(scaling: dict | None, details: dict) -> list[str]:
    lines = ["## Per-stage throughput", ""]
    if not scaling:
        return lines + ["bench_scaling did not produce figures (see its log).", ""]
    lines += [f"`run_stage` in one process (serial executor) over {scaling['tracks']} demo tracks "
              f"({scaling['audio_s']:.0f} s of audio): decode + extract + shard write, with the params.yaml settings; "
              f"numpy/OpenMP threads: {scaling.get('library_threads', 'library defaults')}.{load_note(scaling)} "
              "Set-up (model/plugin load) is paid once per worker process (once per task on SLURM).", "",
              "| stage | audio s / CPU s | audio s / wall s | CPU s per audio hour | set-up s |",
              "|---|---:|---:|---:|---:|"]
    for r in scaling["stages"]:
        if "skipped" in r:
            lines.append(f"| {r['stage']} | skipped: {r['skipped']} | | | |")
        else:
            lines.append(f"| {r['stage']} | {r['audio_s_per_cpu_s']:.1f} | {r['audio_s_per_wall_s']:.1f} | "
                         f"{r['cpu_s_per_audio_hour']:.0f} | {r['setup_s']:.2f} |")
    lines += ["", "![stage throughput](stage_throughput.png)", ""]
    if details:
        lines += ["Details from the stage benchmarks (quick settings; full tables in `logs/`):", ""]
        lines += [f"- {text}" for text in details.values()] + [""]
    return lines


def stage_details(out: Path) -> dict[str, str]:
    """One line per stage benchmark, from its JSON (missing ones are left out)."""
    lines = {}
    if (m := load(out, "manifest")) is not None:
        warm = next((r for r in m["runs"] if r["set"] == "mixed" and r["workers"] == 1), None)
        if warm:
            lines["manifest"] = (f"manifest: {warm['files_per_s']:.0f} files/s ({m['seconds_per_file']:g} s files, "
                                 f"probe + sha256, 1 process) = {warm['files_per_s'] * m['seconds_per_file']:.0f} audio s per s")
    if (c := load(out, "chords")) is not None:
        by = {r["what"]: r for r in c["results"]}
        plugin, stage = by.get("plugin alone (vamp.collect)"), by.get("stage extract")
        if plugin and stage:
            lines["chords"] = (f"chords: Chordino alone {plugin['audio_s_per_cpu_s']:.0f} audio s / CPU s; the stage's "
                               f"extract {stage['audio_s_per_cpu_s']:.0f} ({100 * stage['overhead_vs_plugin']:+.0f} % CPU)")
    if (d := load(out, "drums")) is not None:
        parts = [f"{r['separator']} ({r['weights']}, {r['device']}, {r['mode']}) RTF {r['rtf']:.3f}" for r in d["rows"]]
        lines["drums"] = "drums separators (wall s per audio s): " + "; ".join(parts)
    if (ml := load(out, "melody")) is not None:
        torch_rows = [r for r in ml["rows"] if r["what"] == "torch"]
        if torch_rows:
            best = min(torch_rows, key=lambda r: r["cpu_s_per_audio_s"])
            lines["melody"] = (f"melody (DeepSalience torch, {ml['threads']} threads): {best['cpu_s_per_audio_s']:.3f} CPU s "
                               f"per audio s, {100 * best['of_matmul_peak']:.0f} % of the {ml['matmul_gflops']:.0f} GFLOP/s "
                               "fp32 matmul rate (nominal MACs)")
    if (lt := load(out, "latents")) is not None:
        parts = [f"{r['codec']} ({r['weights']}) encode {r['encode_rtf']:.4f} / decode {r['decode_rtf']:.4f}"
                 for r in lt if r["batch"] == 1]
        lines["latents"] = "latents codecs, RTF (wall s per audio s), batch 1: " + "; ".join(parts)
    return lines


def scaling_section(scaling: dict | None, executors: dict | None) -> list[str]:
    lines = ["## Parallel efficiency: 1 vs 2 workers", ""]
    if scaling and scaling["scaling"]["runs"]:
        s = scaling["scaling"]
        lines += [f"Stage `{s['stage']}` over {s['tracks']} tracks ({s['audio_s']:.0f} s of audio) in {s['shards']} "
                  f"shards of {s['tracks_per_shard']} tracks; the same shards serially in-process take "
                  f"{s['serial_work_s']:.1f} s. SLURM: array parallelism 1 and 2, one CPU per task (the node has "
                  f"{scaling['cpus']}). Start-up = creating the executor (dask LocalCluster; the process pool starts "
                  "its workers lazily inside the run).", "",
                  "| backend | workers | start-up s | run s | overhead per shard s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['backend']} | {r['workers']} | {r['startup_s']:.2f} | {r['run_s']:.2f} | "
                  f"{r['overhead_s_per_shard']:.2f} |" for r in s["runs"]]
        lines += ["", "| backend | speed-up (run) | parallel efficiency | speed-up incl. start-up | efficiency incl. start-up |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {e['backend']} | {e['speedup']:.2f} | {100 * e['efficiency']:.0f} % | "
                  f"{e['speedup_with_startup']:.2f} | {100 * e['efficiency_with_startup']:.0f} % |" for e in s["efficiency"]]
        lines += [f"\nNot measured: {k}: {v}" for k, v in s["skipped"].items()]
        lines += ["", "Overhead per shard = (run wall x workers - serial work) / shards: task dispatch, worker start, "
                  "stage set-up per process (per task on SLURM), result collection.", "",
                  "![parallel efficiency](parallel_efficiency.png)", ""]
    else:
        lines += ["bench_scaling did not measure the executors (see its log).", ""]
    lines += ["## Executor overhead per task (trivial tasks)", ""]
    if executors:
        lines += [f"{executors['results'][0]['tasks']} tasks that do no work, 2 workers (`bench/bench_executors.py`):", "",
                  "| backend | start-up s | first result s | wall s | overhead ms / task |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['backend']} | {r['startup_s']:.2f} | {r['first_result_s']:.2f} | {r['wall_s']:.2f} | "
                  f"{r['overhead_ms_per_task']:.1f} |" for r in executors["results"]]
        if not any(r["backend"] == "slurm" for r in executors["results"]):
            lines.append("\nSLURM not measured: `sinfo` did not answer (run with `--start-slurm`).")
        lines += ["", "![executor overhead](executor_overhead.png)", ""]
    else:
        lines += ["bench_executors did not produce figures (see its log).", ""]
    return lines


def dvc_section(seconds: float | None, source: str) -> list[str]:
    lines = ["## End-to-end `dvc repro` on the demo corpus", ""]
    if seconds is None:
        return lines + ["Not measured in this run (`--run-dvc` times it in a fresh clone, ~15-20 min; or pass "
                        "`--dvc-repro-seconds` from a measured run).", ""]
    return lines + [f"{seconds:.0f} s ({seconds / 60:.1f} min) from nothing to the model evaluation, 2 CPU cores "
                    f"({source}).", ""]


def train_section(train: dict | None) -> list[str]:
    lines = ["## Training throughput vs fp32 matmul", ""]
    if not train:
        return lines + ["bench_train did not produce figures (see its log).", ""]
    return lines + [
        f"Demo model d={train['model']['dim']} x {train['model']['layers']} layers, {train['model']['heads']} heads "
        f"({train['parameters'] / 1e6:.2f} M parameters), {train['model']['frames_per_token']} latent frames per token, "
        f"batch {train['batch_size']} x {train['tokens_per_step'] // train['batch_size']} tokens, {train['device']}, "
        f"{train['threads']} threads; {train['timed_steps']} timed steps after {train['warmup_steps']} warm-up steps. "
        "FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` on a real step (forward + backward).", "",
        "| fp32 matmul GFLOP/s | steps/s | tokens/s | GFLOP / step | achieved GFLOP/s | of matmul (target >= 75 %) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {train['matmul_gflops']:.1f} | {train['steps_per_s']:.2f} | {train['tokens_per_s']:.0f} | "
        f"{train['flops_per_step'] / 1e9:.1f} | {train['achieved_gflops']:.1f} | {100 * train['fraction_of_matmul']:.0f} % |",
        ""] + ([bfloat16_sentence(train["bfloat16"]), ""] if train.get("bfloat16") else [])


def sampling_section(sampling: dict | None) -> list[str]:
    lines = ["## Sampling time per 10 s of audio", ""]
    if not sampling:
        return lines + ["bench_sampling did not produce figures (see its log).", ""]
    ceiling = sampling["ceiling_chord_accuracy"]
    lines += [f"{sampling['clips']} held-out `{sampling['group']}` prompts (10 s each), checkpoint "
              f"`{sampling['checkpoint']}`, guidance cfg_coef_all {sampling['cfg_coef_all']}, batches of "
              f"{sampling['batch_size']}, {sampling['threads']} threads. Model time = the ODE solve (each call runs the "
              f"guidance branches in one batched forward pass); decode = the codec (Griffin-Lim for the offline default). "
              f"Chord accuracy (majmin) re-analysed by the chords stage; decode ceiling = the same clips' real audio "
              f"through the codec alone: {_f(ceiling, 3)}.{load_note(sampling)}", "",
              "| solver | model calls | model s / clip | decode s / clip | s per 10 s (batched) | latency s (1 clip) "
              "| chord accuracy | chance | / ceiling |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sampling["rows"]:
        ratio = r["chord_accuracy"] / ceiling if ceiling and r["chord_accuracy"] is not None else None
        lines.append(f"| {r['solver']} | {r['model_calls']} | {r['model_s_per_clip']:.2f} | {r['decode_s_per_clip']:.2f} | "
                     f"{r['seconds_per_10s']:.2f} | {r['latency_model_s'] + r['latency_decode_s']:.2f} | "
                     f"{_f(r['chord_accuracy'], 3)} | {_f(r['chord_accuracy_chance'], 3)} | {_f(ratio)} |")
    return lines + ["", "![sampling](sampling.png)", ""]


def load_note(figures: dict | None) -> str:
    """The 1-minute load average around a benchmark: above the core count, other work shared the CPUs."""
    if not figures or "loadavg_after" not in figures:
        return ""
    before, after = figures["loadavg_before"][0], figures["loadavg_after"][0]
    busy = max(before, after) > (os.cpu_count() or 1) + 0.5
    return (f" Load average {before:.1f} -> {after:.1f}" +
            (": **other processes shared the CPUs during this benchmark; its times are pessimistic.**" if busy else "."))


def runs_section(runs: list[dict]) -> list[str]:
    lines = ["## Benchmark runs", "", "| benchmark | command | exit | wall s | finished | log |",
             "|---|---|---:|---:|---|---|"]
    lines += [f"| {r['name']} | `{r['command']}` | {r['rc']} | {r['wall_s']} | {r.get('finished', '-')} | "
              f"[{r['log']}]({r['log']}) |" for r in runs]
    return lines + [""]


def build_report(out: Path, runs: list[dict], dvc_seconds: float | None, dvc_source: str, hours: float) -> str:
    scaling, executors = load(out, "scaling"), load(out, "executors")
    plan = plan_run(scaling, executors, hours, load(out, "train")) if scaling else None
    atomic_write_text(out / "json" / "plan.json", json.dumps(plan, indent=2) + "\n")
    if plan:  # the same text, alone, for the project README
        atomic_write_text(out / "planning.md", "\n".join(plan_markdown(plan)) + "\n")
    write_plots(out, scaling, load(out, "sampling"), executors)
    lines = ["# chordflow benchmark report", "",
             "Generated by `python bench/report.py --out bench/report` (`make bench-report`) from the figures in "
             "`json/`; the last table lists each benchmark's command, exit code, time and log.", ""]
    lines += machine_section(load(out, "machine") or machine_now())
    lines += side_by_side_section(load(out, "side_by_side"))
    lines += stage_section(scaling, stage_details(out))
    lines += scaling_section(scaling, executors)
    lines += dvc_section(dvc_seconds, dvc_source)
    lines += train_section(load(out, "train"))
    lines += sampling_section(load(out, "sampling"))
    lines += ["## Planning a 16,000-hour run" if hours == 16000 else f"## Planning a {hours:,.0f}-hour run", ""]
    lines += (plan_markdown(plan) if plan else ["Needs the per-stage costs of bench_scaling."]) + [""]
    lines += runs_section(runs)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/report", help="report folder")
    parser.add_argument("--only", help="comma-separated benchmarks to run (others keep their JSON in OUT)")
    parser.add_argument("--no-run", action="store_true", help="rebuild the report from OUT/json only")
    parser.add_argument("--dvc-repro-seconds", type=float, help="measured end-to-end dvc repro time to report")
    parser.add_argument("--run-dvc", action="store_true", help="time dvc repro in a fresh clone (slow)")
    parser.add_argument("--start-slurm", action="store_true",
                        help="start the local SLURM cluster if sinfo does not answer (and stop it afterwards)")
    parser.add_argument("--hours", type=float, default=16000.0, help="audio hours of the planned run")
    parser.add_argument("--checkpoint", help="model checkpoint for bench_sampling (default: its own, models/demo)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    for sub in ("json", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    progress = lambda text: print(f"[report {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
    runs_file = out / "json" / "runs.json"
    previous = {r["name"]: r for r in json.loads(runs_file.read_text())} if runs_file.is_file() else {}

    started_slurm = False
    if args.start_slurm and not args.no_run and not slurm_answers():
        progress("starting the local SLURM cluster (slurm/cluster.sh start)")
        started_slurm = subprocess.run([str(ROOT / "slurm" / "cluster.sh"), "start"], cwd=ROOT).returncode == 0
    try:
        names = bench_names() if not args.only else args.only.split(",")
        runs = dict(previous)
        if not args.no_run:
            for name in names:
                extra = ["--checkpoint", args.checkpoint] if name == "sampling" and args.checkpoint else []
                runs[name] = run_bench(name, out, progress, extra)
                atomic_write_text(runs_file, json.dumps(list(runs.values()), indent=1) + "\n")
            atomic_write_text(out / "json" / "machine.json", json.dumps(machine_now()) + "\n")
    finally:
        if started_slurm:
            progress("stopping the SLURM cluster this report started")
            subprocess.run([str(ROOT / "slurm" / "cluster.sh"), "stop"], cwd=ROOT, stdout=subprocess.DEVNULL)

    dvc_seconds, dvc_source = args.dvc_repro_seconds, "given with --dvc-repro-seconds"
    if args.run_dvc:
        dvc_seconds, dvc_source = time_dvc_repro(progress), "measured in this run, fresh clone of HEAD"
    elif dvc_seconds is None and (old := load(out, "dvc")) is not None:
        dvc_seconds, dvc_source = old["seconds"], old["source"]
    if dvc_seconds is not None:
        atomic_write_text(out / "json" / "dvc.json", json.dumps({"seconds": dvc_seconds, "source": dvc_source}) + "\n")
    ordered = [runs[n] for n in bench_names() if n in runs]
    atomic_write_text(out / "README.md", build_report(out, ordered, dvc_seconds, dvc_source, args.hours))
    progress(f"wrote {out / 'README.md'}")
    failed = [r["name"] for r in ordered if r["rc"] != 0]
    if failed:
        progress(f"failed: {', '.join(failed)} (see {out / 'logs'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
