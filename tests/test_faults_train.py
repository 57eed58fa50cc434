"""Training killed with SIGKILL mid-run resumes from its last checkpoint with the same loss trace."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from model.checkpoint import load_checkpoint
from model_helpers import build_tiny_features

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("CHORDFLOW_FAULT_SEED", "7"))
TRAIN = {"steps": 80, "batch_size": 4, "segment_seconds": 1.0, "warmup_steps": 2, "checkpoint_every": 7,
         "eval_every": 10, "eval_batches": 1, "normalisation": "per_dim", "seed": 1, "threads": 1}
MODEL = {"dim": 32, "layers": 2, "heads": 2, "frames_per_token": 2, "chord_embed_dim": 8, "melody_embed_dim": 8,
         "drum_embed_dim": 8}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_faults")
    tiny = build_tiny_features(root / "features")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"model": MODEL, "train": TRAIN}))
    straight = root / "straight"
    run(command(tiny, params, straight))  # the uninterrupted reference run
    return tiny, params, straight


def command(tiny, params: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "chordflow", "train", "--manifest", str(tiny.manifest), "--metadata",
            str(tiny.metadata), "--latents", str(tiny.latents), "--chords", str(tiny.chords), "--melody",
            str(tiny.melody), "--stats", str(tiny.stats), "--out", str(out), "--params", str(params), "--no-progress"]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]


def steps_written(out: Path) -> int:
    path = out / "losses.tsv"
    return len(path.read_text().splitlines()) - 1 if path.is_file() else 0


@pytest.mark.parametrize("trial", range(2))
def test_sigkill_mid_training_then_resume_matches_uninterrupted(setup, tmp_path, trial):
    tiny, params, straight = setup
    rng = random.Random(SEED * 100 + trial)
    min_steps = rng.choice([7, 21, 35])  # wait for this many checkpointed steps, then a random extra delay
    extra = rng.uniform(0.0, 0.2)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(tiny, params, killed), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while steps_written(killed) < min_steps and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(extra)
    finished_before_kill = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    where = f"seed {SEED} trial {trial}: killed after >= {min_steps} steps + {extra:.2f} s"
    if finished_before_kill:
        pytest.fail(f"{where}: training ended before the kill; lengthen TRAIN['steps']")
    interrupted_at = load_checkpoint(killed / "checkpoint.pt").training.step
    assert 0 < interrupted_at < TRAIN["steps"], where
    run(command(tiny, params, killed))
    assert not [p for p in killed.iterdir() if p.name.startswith(".")], f"{where}: temp files left behind"
    assert (killed / "losses.tsv").read_text() == (straight / "losses.tsv").read_text(), where
    assert (killed / "val_losses.tsv").read_text() == (straight / "val_losses.tsv").read_text(), where
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    assert a.training.step == b.training.step == TRAIN["steps"]
    for key, value in a.artifact.model_weights.items():
        assert value.equal(b.artifact.model_weights[key]), f"{where}: weights differ at {key}"
