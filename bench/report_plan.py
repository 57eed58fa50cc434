"""Plan a large feature-extraction run from the measured per-stage costs (bench/report.py).

Inputs are bench_scaling's per-stage CPU seconds per audio hour and set-up times, and the SLURM
per-shard overhead (bench_scaling's real-stage measurement, else bench_executors' trivial tasks).
All stages share one shard plan (``sharding`` in params.yaml). The suggested shard size is the
smallest round size at which the fixed per-shard costs of all stages together (task overhead +
stage set-up, paid per SLURM task) stay under ``MAX_OVERHEAD`` of their compute, capped so that
the slowest stage's shard stays under ``MAX_SHARD_WORK_S`` of work (a killed or preempted task
redoes at most that much).
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.constants import LATENT_FRAME_RATE

MAX_OVERHEAD = 0.01
MAX_SHARD_WORK_S = 1800.0
#: Candidate shard sizes (seconds of audio per shard): round numbers a user would type.
SHARD_SIZES_S: tuple[float, ...] = (300, 600, 900, 1200, 1800, 3600, 7200, 14400, 28800)
#: SLURM's default MaxArraySize is 1001: the executor splits larger maps into several arrays.
SLURM_DEFAULT_MAX_ARRAY = 1001
EXAMPLE_CONCURRENT_TASKS: tuple[int, ...] = (64, 512)
#: Overhead per SLURM task assumed when none was measured (seconds).
ASSUMED_TASK_OVERHEAD_S = 1.0


def task_overhead(scaling: dict, executors: dict | None) -> tuple[float, str]:
    """Per-task SLURM overhead without the stage's own set-up (s), and where it comes from."""
    setups = {r["stage"]: r.get("setup_s", 0.0) for r in scaling["stages"]}
    runs = [r for r in scaling["scaling"]["runs"] if r["backend"] == "slurm" and r["workers"] == 1]
    if runs:
        stage = scaling["scaling"]["stage"]
        return max(0.0, runs[0]["overhead_s_per_shard"] - setups.get(stage, 0.0)), \
            f"measured: SLURM array tasks of the {stage} stage"
    trivial = [r for r in (executors or {}).get("results", []) if r["backend"] == "slurm"]
    if trivial:
        return max(0.0, trivial[0]["overhead_ms_per_task"] / 1e3), "measured: SLURM tasks that do no work"
    return ASSUMED_TASK_OVERHEAD_S, "assumed (SLURM not measured in this run)"


def plan_run(scaling: dict, executors: dict | None, hours: float, train: dict | None = None) -> dict[str, Any]:
    """Per-stage CPU-hours, a shard size and task counts for ``hours`` of audio."""
    stages = [r for r in scaling["stages"] if "cpu_s_per_audio_hour" in r]
    overhead, source = task_overhead(scaling, executors)
    audio_s = hours * 3600
    cost = {r["stage"]: r["cpu_s_per_audio_hour"] / 3600 for r in stages}  # CPU s per audio s
    fixed = {r["stage"]: overhead + r["setup_s"] for r in stages}
    # All stages share the shard plan (params.yaml `sharding`): fixed costs summed over the stages
    # must stay under MAX_OVERHEAD of their summed compute (cheap stages alone would ask for huge shards).
    needed = sum(fixed.values()) / (MAX_OVERHEAD * sum(cost.values())) if cost else SHARD_SIZES_S[0]
    cap = MAX_SHARD_WORK_S / max(cost.values()) if cost else math.inf
    shard_s = next((size for size in SHARD_SIZES_S if size >= needed), SHARD_SIZES_S[-1])
    if shard_s > cap:
        shard_s = max([size for size in SHARD_SIZES_S if size <= cap], default=SHARD_SIZES_S[0])
    shards = math.ceil(audio_s / shard_s)
    rows = []
    for r in stages:
        name = r["stage"]
        cpu_hours = cost[name] * audio_s / 3600
        rows.append({"stage": name, "cpu_s_per_audio_hour": r["cpu_s_per_audio_hour"], "cpu_hours": cpu_hours,
                     "shard_work_min": cost[name] * shard_s / 60,
                     "overhead_fraction": fixed[name] / (cost[name] * shard_s),
                     "wall_hours": {n: cpu_hours / n for n in EXAMPLE_CONCURRENT_TASKS}})
    skipped = {r["stage"]: r["skipped"] for r in scaling["stages"] if "skipped" in r}
    overhead_total = sum(fixed.values()) * math.ceil(audio_s / shard_s) / 3600
    plan = {"hours": hours, "task_overhead_s": overhead, "overhead_cpu_hours": overhead_total, "task_overhead_source": source,
            "max_overhead": MAX_OVERHEAD, "max_shard_work_s": MAX_SHARD_WORK_S, "seconds_per_shard": shard_s,
            "shards_per_stage": shards, "stages": rows, "skipped": skipped,
            "total_cpu_hours": sum(r["cpu_hours"] for r in rows), "cpus": scaling.get("cpus")}
    if train:
        tokens = audio_s * LATENT_FRAME_RATE / train["model"]["frames_per_token"]
        plan["train"] = {"tokens_per_epoch": tokens, "tokens_per_s": train["tokens_per_s"],
                         "epoch_days_here": tokens / train["tokens_per_s"] / 86400}
    return plan


def plan_markdown(plan: dict[str, Any]) -> list[str]:
    """The planning section (also written alone to OUT/planning.md for the project README)."""
    hours, shard_s = plan["hours"], plan["seconds_per_shard"]
    lines = [f"Measured on this machine ({plan['cpus']} CPUs; per CPU core, one stage process per core), "
             f"scaled to {hours:,.0f} h of audio. Costs are CPU time of the default (offline) settings in "
             "params.yaml: HPSS drums, Chordino, DeepSalience on CPU, log-spectrogram latents.", "",
             f"| stage | CPU s per audio hour | CPU-hours for {hours:,.0f} h | minutes per shard | overhead per shard | "
             + " | ".join(f"wall h on {n} tasks" for n in EXAMPLE_CONCURRENT_TASKS) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(EXAMPLE_CONCURRENT_TASKS)]
    for r in plan["stages"]:
        walls = " | ".join(f"{r['wall_hours'][n]:,.1f}" for n in EXAMPLE_CONCURRENT_TASKS)
        lines.append(f"| {r['stage']} | {r['cpu_s_per_audio_hour']:,.0f} | {r['cpu_hours']:,.0f} | "
                     f"{r['shard_work_min']:.1f} | {100 * r['overhead_fraction']:.2f} % | {walls} |")
    total = plan["total_cpu_hours"]
    lines.append(f"| **all stages** | | **{total:,.0f}** | | | "
                 + " | ".join(f"{total / n:,.1f}" for n in EXAMPLE_CONCURRENT_TASKS) + " |")
    lines += [""] + [f"Not costed (skipped in this run): {k}: {v}" for k, v in plan["skipped"].items()]
    lines += [
        f"- **Shard size**: `sharding: {{seconds_per_shard: {shard_s:.0f}}}` ({shard_s / 60:.0f} min of audio per "
        f"shard, `tracks_per_shard: null`), the smallest round size at which the fixed costs per SLURM task "
        f"(task overhead {plan['task_overhead_s']:.2f} s, {plan['task_overhead_source']}, plus each stage's "
        f"model/plugin set-up), summed over the stages, stay under {100 * plan['max_overhead']:.0f} % of their "
        f"compute ({plan['overhead_cpu_hours']:,.0f} CPU-hours of {plan['total_cpu_hours']:,.0f}), with the slowest "
        f"stage's shard under {plan['max_shard_work_s'] / 60:.0f} min of work (what a killed or preempted task "
        "redoes). Cheap stages show a larger overhead share of their own (small) cost.",
        f"- **Tasks**: {plan['shards_per_stage']:,} shards = {plan['shards_per_stage']:,} SLURM array tasks per stage "
        "(`chordflow <stage> extract --executor slurm`: one task per shard, in job arrays of up to `executor.slurm.max_array_size`, "
        "`executor.slurm.array_parallelism` running at once, `cpus_per_task: 1`; with more CPUs per task set "
        "`melody.threads` to match).",
    ]
    if plan["shards_per_stage"] > SLURM_DEFAULT_MAX_ARRAY:
        arrays = -(-plan["shards_per_stage"] // (SLURM_DEFAULT_MAX_ARRAY - 1))
        lines.append(f"- **SLURM MaxArraySize**: {plan['shards_per_stage']:,} tasks exceed SLURM's default "
                     f"MaxArraySize ({SLURM_DEFAULT_MAX_ARRAY}); the executor submits them as {arrays} arrays of at most "
                     "`executor.slurm.max_array_size` (1000) tasks each, so nothing needs changing on the cluster "
                     "(raise `max_array_size` where `scontrol show config | grep MaxArraySize` allows, for fewer jobs).")
    lines.append("- **Wall time** = CPU-hours / concurrent 1-CPU tasks (the per-stage columns), as long as the "
                 "shared filesystem keeps up: every task reads its tracks once and writes one Parquet shard.")
    if "train" in plan:
        t = plan["train"]
        lines.append(f"- **Training**: one epoch over {hours:,.0f} h is {t['tokens_per_epoch'] / 1e6:,.0f} M tokens; "
                     f"at this machine's {t['tokens_per_s']:,.0f} tokens/s (tiny CPU model) that is "
                     f"{t['epoch_days_here']:,.0f} days: train on GPUs (`chordflow train` under torchrun, or "
                     "`--executor slurm` with `executor.slurm.gpus_per_node`).")
    return lines
