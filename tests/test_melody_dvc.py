"""The melody stages of dvc.yaml (the snippet proposed for the lead): `dvc repro` runs them, a
second `dvc repro` is a no-op, and changing only `melody_eval` re-runs only the evaluation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from pipeline.manifest import build_manifest, write_manifest
from stages.melody.constants import WEIGHTS_ENV
from tests.test_melody_support import synth_melody, weights_dir, write_truth  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))

# The entries proposed for dvc.yaml (paths as in the repository).
MELODY_STAGES = yaml.safe_load("""
melody:
  cmd: chordflow melody extract --manifest manifests/demo.parquet --out data/features/melody --params params.yaml --no-progress
  params: [melody, sharding]
  deps: [manifests/demo.parquet, stages/melody]
  outs: [data/features/melody]
melody-eval:
  cmd:
    - >-
      chordflow melody eval --manifest manifests/demo.parquet --truth data/corpus/truth
      --features data/features/melody --out metrics/melody.json --params params.yaml --no-progress
    - >-
      chordflow melody plot --audio data/corpus/audio/clip_00000.wav --truth data/corpus/truth/clip_00000.json
      --out plots/melody_clip_00000.png --params params.yaml
  params: [melody, melody_eval]
  deps: [manifests/demo.parquet, data/corpus/truth, data/corpus/audio/clip_00000.wav, data/features/melody, stages/melody]
  metrics:
    - metrics/melody.json: {cache: false}
  plots:
    - plots/melody_clip_00000.png: {cache: false}
""")



def _dvc(cwd: Path, env: dict, *args: str) -> str:
    proc = subprocess.run([DVC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow  # three `dvc repro` runs (~1 min); the acceptance run on the demo corpus is in the report
def test_dvc_repro_then_noop_then_eval_only(tmp_path, weights_dir):
    root = tmp_path / "project"
    shutil.copytree(REPO / "stages" / "melody", root / "stages" / "melody", ignore=shutil.ignore_patterns("__pycache__"))
    corpus = root / "data" / "corpus"
    for folder in ("audio", "truth"):
        (corpus / folder).mkdir(parents=True)
    for i, notes in enumerate(([(60, 0.5), (64, 0.5)], [(67, 0.6), (65, 0.4)])):
        audio, f0 = synth_melody(notes, gap=0.1)
        sf.write(corpus / "audio" / f"clip_0000{i}.wav", audio.T, 22050)
        write_truth(corpus / "truth" / f"clip_0000{i}.json", f0)
    table, rejects = build_manifest([corpus / "audio"], root=root)
    (root / "manifests").mkdir()
    write_manifest(table, rejects, root / "manifests" / "demo.parquet")
    params = {"sharding": {"tracks_per_shard": 1}, "executor": {"backend": "serial", "workers": 1},
              "melody": {"threads": 2}, "melody_eval": {"models": ["melody2"]}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": MELODY_STAGES}, sort_keys=False))
    env = {**os.environ, WEIGHTS_ENV: str(weights_dir)}  # the weights come from the environment
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, env, "init", "-q")
    _dvc(root, env, "config", "core.analytics", "false")

    first = _dvc(root, env, "repro")
    assert all(f"Running stage '{name}'" in first for name in MELODY_STAGES)
    assert (root / "metrics" / "melody.json").is_file() and (root / "plots" / "melody_clip_00000.png").is_file()
    second = _dvc(root, env, "repro")
    assert "Running stage" not in second

    params["melody_eval"]["voicing_threshold"] = 0.4
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    third = _dvc(root, env, "repro")
    assert "Running stage 'melody-eval'" in third and "Running stage 'melody'" not in third
