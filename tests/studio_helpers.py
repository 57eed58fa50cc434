"""A models folder with one tiny, really trained chordflow run, for the studio and notebook tests.

``make demo`` trains ``models/demo/checkpoint.pt``; the tests cannot wait for that, so they train the
same kind of run on the tiny real feature set of :mod:`model_helpers` (a few seconds on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from model_helpers import build_tiny_features

#: Network and training sizes of the tiny run (small enough to train and sample in seconds).
TINY_MODEL = {"dim": 32, "layers": 2, "heads": 2, "frames_per_token": 2, "chord_embed_dim": 8, "melody_embed_dim": 8,
              "drum_embed_dim": 8}
TINY_TRAIN = {"steps": 4, "batch_size": 4, "segment_seconds": 1.0, "warmup_steps": 2, "checkpoint_every": 100,
              "eval_every": 2, "eval_batches": 1, "normalisation": "per_dim", "seed": 5}


def train_tiny_run(root: Path, name: str = "tiny") -> Path:
    """Train a tiny run into ``root/models/<name>/checkpoint.pt``; returns the checkpoint path."""
    from chordflow.cli import main

    tiny = build_tiny_features(root / "features")
    params = root / "train.yaml"
    params.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": TINY_TRAIN}))
    out = root / "models" / name
    paths = {"manifest": tiny.manifest, "metadata": tiny.metadata, "latents": tiny.latents, "chords": tiny.chords,
             "melody": tiny.melody, "stats": tiny.stats, "out": out}
    args = [item for key, path in paths.items() for item in (f"--{key}", str(path))]
    if main(["train", *args, "--params", str(params), "--no-progress"]) != 0:
        raise RuntimeError("the tiny studio run did not train")
    return out / "checkpoint.pt"
