"""Helpers for the fault-injection tests: a small corpus, a stage run in its own process group,
kills at random (seeded) points, and the checks every trial ends with.

A trial starts ``python -m chordflow <stage> ...`` in a new session, waits for a randomly
chosen point of the run (a delay after start, the k-th shard on disk, or a shard being written),
SIGKILLs a victim (the whole process group, one worker, one SLURM task), re-runs the stage and
compares the shards byte for byte with an undisturbed run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import psutil
import pyarrow.parquet as pq
import soundfile as sf
import yaml

from pipeline.atomic import TEMP_MARKER
from pipeline.manifest import build_manifest, read_manifest, write_manifest
from pipeline.store import SHARD_PATTERN, list_shards, read_shard_meta
from stages.loudness import LoudnessExtractor

REPO_ROOT = Path(__file__).resolve().parents[1]
#: How often the trial driver looks at the output folder (s): short, to catch shard writes.
POLL_S = 0.002
#: Longest a single stage run may take in these tests before it counts as hung (s).
RUN_TIMEOUT_S = 240.0


def write_corpus(folder: Path, n_tracks: int, seed: int, seconds: tuple[float, float] = (1.0, 4.0)) -> list[Path]:
    """``n_tracks`` noisy chord-like tracks in mixed formats, rates and channel counts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_tracks):
        sr = (22050, 44100, 32000, 16000)[i % 4]
        channels = 1 + i % 2
        n = round(rng.uniform(*seconds) * sr)
        t = np.arange(n) / sr
        base = rng.uniform(110, 440)
        chord = sum(np.sin(2 * np.pi * base * ratio * t) for ratio in (1.0, 1.25, 1.5))
        signal_ = 0.2 * chord / 3 + 0.02 * rng.standard_normal(n)
        data = np.repeat(signal_[:, None], channels, axis=1).astype(np.float32)
        path = folder / f"track{i:02d}.{'flac' if i % 3 else 'wav'}"
        sf.write(path, data, sr)
        paths.append(path)
    return paths


def make_manifest(audio: Path, manifest: Path) -> Path:
    table, rejects = build_manifest([audio], workers=1)
    write_manifest(table, rejects, manifest)
    return manifest


def write_params(path: Path, stage: str, stage_params: dict | None = None, **executor) -> Path:
    """A params.yaml with the stage section and an ``executor`` section (``slurm=`` a mapping)."""
    params = {stage: stage_params or {}, "executor": executor}
    path.write_text(yaml.safe_dump(params))
    return path


def stage_argv(stage: str, manifest: Path, out: Path, params: Path, executor: str, workers: int,
               tracks_per_shard: int, full_cli: bool = False) -> list[str]:
    """The command that runs ``stage``'s extraction with the standard run options.

    ``full_cli``: ``python -m chordflow <stage> extract`` (``run loudness``), the user's
    command. Otherwise this module's lean launcher, which calls the same
    :func:`pipeline.run_cli.run_stage_from_args` without building every subcommand's parser
    (that imports torch, ~2 s per launch, which dozens of trials cannot afford).
    """
    options = ["--manifest", str(manifest), "--out", str(out), "--params", str(params), "--executor", executor,
               "--workers", str(workers), "--tracks-per-shard", str(tracks_per_shard), "--no-progress"]
    if not full_cli:
        return [sys.executable, "-m", "tests.fault_helpers", stage, *options]
    command = ["run", stage] if stage == "loudness" else [stage, "extract"]
    return [sys.executable, "-m", "chordflow", *command, *options]


def start(argv: Sequence[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start a command as the leader of a new process group (so the whole group can be killed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    handle = open(log, "ab")
    try:
        return subprocess.Popen(list(argv), cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    finally:
        handle.close()


def run_to_end(argv: Sequence[str], cwd: Path, log: Path, timeout_s: float = RUN_TIMEOUT_S) -> int:
    """Run a command to completion (killing its group if it hangs); returns the exit code."""
    proc = start(argv, cwd, log)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise AssertionError(f"{' '.join(argv)} did not finish in {timeout_s}s; log {log}:\n{tail(log)}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process of ``proc``'s group and reap the leader."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    wait_group_gone(proc.pid)


def wait_group_gone(pgid: int, timeout_s: float = 30.0) -> None:
    """Wait until no process of group ``pgid`` is left (orphaned workers die with their group)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid and _running(p)]
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"process group {pgid} still alive after SIGKILL")


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ----------------------------------------------------------------------------- kill points


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """Where in a run to strike: ``after_start`` (seconds after launch), ``after_shards`` (once
    ``shards`` shard files exist, plus ``delay_s``) or ``while_writing`` (a temp file is visible)."""

    kind: str
    shards: int = 0
    delay_s: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}(shards={self.shards}, delay={self.delay_s:.3f}s)"


def random_kill_point(rng: np.random.Generator, total_shards: int, startup_s: float) -> KillPoint:
    kind = rng.choice(["after_start", "after_shards", "after_shards", "while_writing"])
    if kind == "after_start":
        return KillPoint("after_start", delay_s=float(rng.uniform(0.0, startup_s)))
    if kind == "after_shards":
        return KillPoint("after_shards", shards=int(rng.integers(0, total_shards)), delay_s=float(rng.uniform(0, 0.05)))
    return KillPoint("while_writing", shards=int(rng.integers(0, total_shards)))


@dataclasses.dataclass
class KillOutcome:
    point: KillPoint
    killed_live_run: bool  # False if the run had finished before the point was reached
    shards_at_kill: int
    temp_files_at_kill: int
    victim: str
    exit_code: int | None = None  # of a run that went on after losing a worker or task

    def __str__(self) -> str:
        ended = "" if self.exit_code is None else f", run then exited {self.exit_code}"
        return (f"{self.point}: victim {self.victim}, live={self.killed_live_run}, "
                f"{self.shards_at_kill} shards and {self.temp_files_at_kill} temp files at the kill{ended}")


def shard_names(out: Path) -> list[str]:
    try:
        return [name for name in os.listdir(out) if SHARD_PATTERN.match(name)]
    except FileNotFoundError:
        return []


def temp_names(out: Path) -> list[str]:
    try:
        return [name for name in os.listdir(out) if TEMP_MARKER in name]
    except FileNotFoundError:
        return []


def wait_for_point(proc: subprocess.Popen, out: Path, point: KillPoint, started: float,
                   timeout_s: float = RUN_TIMEOUT_S) -> bool:
    """Block until ``point`` is reached; False if the run ended first."""
    deadline = started + timeout_s
    if point.kind == "after_start":
        while time.monotonic() < started + point.delay_s:
            if proc.poll() is not None:
                return False
            time.sleep(POLL_S)
        return proc.poll() is None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if len(shard_names(out)) >= point.shards and (point.kind != "while_writing" or temp_names(out)):
            break
        time.sleep(POLL_S)
    else:
        raise AssertionError(f"{point} not reached in {timeout_s}s")
    time.sleep(point.delay_s)
    return proc.poll() is None


def strike(proc: subprocess.Popen, out: Path, point: KillPoint,
           victim: Callable[[subprocess.Popen], str] | None = None) -> KillOutcome:
    """Wait for ``point`` in the running ``proc`` and SIGKILL the victim (default: the whole group).

    ``victim(proc)`` kills something else (a worker, a SLURM task) and names what it killed; the
    run is then left to finish or fail by itself.
    """
    started = time.monotonic()
    live = wait_for_point(proc, out, point, started)
    shards, temps = len(shard_names(out)), len(temp_names(out))
    name = "process group"
    if live and victim is not None:
        name = victim(proc)
    else:
        kill_group(proc)
    return KillOutcome(point, live, shards, temps, name)


# ----------------------------------------------------------------------------- checks


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in list_shards(out)}


def assert_visible_shards_whole(out: Path, context: str) -> None:
    """Every file under a shard name is a complete shard: footer, metadata and all rows read."""
    for path in list_shards(out):
        try:
            meta = read_shard_meta(path)
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any failure here is the bug being tested for
            raise AssertionError(f"{context}: partial or corrupt shard visible: {path.name}: {exc}") from exc
        assert table.num_rows + len(meta.errors) == meta.planned, f"{context}: {path.name} lacks tracks"


def assert_matches_reference(out: Path, reference: dict[str, bytes], manifest: Path, context: str) -> None:
    """Same shard files, byte for byte; every manifest track exactly once; no temp file left."""
    found = shard_bytes(out)
    assert sorted(found) == sorted(reference), f"{context}: shard files {sorted(found)} != {sorted(reference)}"
    differing = [name for name in reference if found[name] != reference[name]]
    assert not differing, f"{context}: shards differ from the undisturbed run: {differing}"
    assert not temp_names(out), f"{context}: temp files left: {temp_names(out)}"
    seen: list[str] = []
    for path in list_shards(out):
        meta = read_shard_meta(path)
        seen += pq.read_table(path, columns=["track_id"]).column("track_id").to_pylist()
        seen += [e.track_id for e in meta.errors]
    expected = read_manifest(manifest).column("track_id").to_pylist()
    duplicates = sorted({t for t in seen if seen.count(t) > 1})
    assert not duplicates, f"{context}: tracks stored twice: {duplicates}"
    assert sorted(seen) == sorted(expected), f"{context}: missing {sorted(set(expected) - set(seen))}"


# ----------------------------------------------------------------------------- a stage with switchable faults

#: The loudness stage with faults switched on by environment variables (inherited by SLURM tasks).
HELD_STAGE = "tests.fault_helpers:HeldLoudness"
#: Folder where each task's ``setup()`` leaves a marker named after its SLURM task (or pid).
MARKER_DIR_ENV = "CHORDFLOW_TEST_MARKER_DIR"
#: Seconds ``setup()`` then holds the task, so it can be signalled while inside the shard task.
HOLD_ENV = "CHORDFLOW_TEST_HOLD_S"
#: File stem of a track whose group makes the whole shard task raise (not a per-track error).
FAIL_TRACK_ENV = "CHORDFLOW_TEST_FAIL_TRACK"


class HeldLoudness(LoudnessExtractor):
    """Exactly the loudness features (same bytes whatever the environment), plus test faults."""

    name = "held_loudness"

    def setup(self) -> None:
        super().setup()
        marker_dir = os.environ.get(MARKER_DIR_ENV)
        if marker_dir:
            task = "_".join(filter(None, (os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID"))))
            restart = os.environ.get("SLURM_RESTART_COUNT", "0")
            # Contents: the job id proper (scontrol takes it for array tasks too) and this pid.
            Path(marker_dir, f"{task or os.getpid()}.{restart}").write_text(
                f"{os.environ.get('SLURM_JOB_ID', '')} {os.getpid()}")
        time.sleep(float(os.environ.get(HOLD_ENV, "0")))

    def process_many(self, items):
        failing = os.environ.get(FAIL_TRACK_ENV)
        if failing and any(Path(context.path).stem == failing for _, _, context in items):
            raise RuntimeError(f"injected task failure while processing {failing}")
        return super().process_many(items)


# ----------------------------------------------------------------------------- memory


def peak_rss_of_tree(proc: subprocess.Popen, interval_s: float = 0.05, timeout_s: float = RUN_TIMEOUT_S) -> int:
    """Poll ``proc`` and its descendants until it exits; the largest summed RSS seen (bytes)."""
    root = psutil.Process(proc.pid)
    peak = 0
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            kill_group(proc)
            raise AssertionError(f"process {proc.pid} did not finish in {timeout_s}s")
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                try:
                    total += member.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            break
        peak = max(peak, total)
        time.sleep(interval_s)
    return peak


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.fault_helpers STAGE --manifest ... --out ...``: run one stage like its CLI."""
    import argparse
    import logging

    from pipeline.run_cli import add_run_arguments, run_stage_from_args

    parser = argparse.ArgumentParser(prog="fault_helpers")
    parser.add_argument("stage")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_stage_from_args(args.stage, args)


if __name__ == "__main__":
    sys.exit(main())
