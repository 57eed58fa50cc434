"""The melody stages of dvc.yaml: `dvc repro` runs them, a
second `dvc repro` is a no-op, and changing only `melody_eval` re-runs only the evaluation."""

from __future__ import annotations

import os

import pytest
import soundfile as sf
import yaml

from pipeline.manifest import build_manifest, write_manifest
from stages.melody.constants import WEIGHTS_ENV
from tests.dvc_project import init_project, repo_stages, run_dvc
from tests.test_melody_support import synth_melody, weights_dir, write_truth  # noqa: F401 (fixture)

@pytest.mark.slow  # three `dvc repro` runs (~1 min); the acceptance run on the demo corpus is in the report
def test_dvc_repro_then_noop_then_eval_only(tmp_path, weights_dir):
    root = tmp_path / "project"
    melody_stages = repo_stages("melody", "melody-eval")
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
    env = {**os.environ, WEIGHTS_ENV: str(weights_dir)}  # the weights come from the environment
    init_project(root, melody_stages, params, copy=("pipeline", "stages"), env=env)  # the code the stages depend on

    first = run_dvc(root, "repro", env=env)
    assert all(f"Running stage '{name}'" in first for name in melody_stages)
    assert (root / "metrics" / "melody.json").is_file() and (root / "plots" / "melody_clip_00000.png").is_file()
    second = run_dvc(root, "repro", env=env)
    assert "Running stage" not in second

    params["melody_eval"]["voicing_threshold"] = 0.4
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    third = run_dvc(root, "repro", env=env)
    assert "Running stage 'melody-eval'" in third and "Running stage 'melody'" not in third
