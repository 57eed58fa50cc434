"""dvc.yaml wiring of the chords stage: `dvc repro` renders a tiny corpus, extracts chords, writes
metrics/chords.json and the plot; a re-run is a no-op; a changed chords parameter reruns only the
chords stages."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))


def _dvc(cwd, *args):
    proc = subprocess.run([DVC, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    if "chords" not in stages or "chords-eval" not in stages:
        pytest.fail("dvc.yaml has no 'chords' / 'chords-eval' stages (see the chords stage's integration notes)")
    if shutil.which("fluidsynth") is None:
        pytest.fail("fluidsynth is not installed (scripts/install.sh installs it)")
    root = tmp_path_factory.mktemp("chordsdvc")
    shutil.copy(REPO / "dvc.yaml", root)
    for package in ("pipeline", "stages"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["corpus"].update(n=3, clip_seconds=[4.0, 5.0])
    params["executor"].update(backend="serial")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    _dvc(root, "config", "core.analytics", "false")
    return root


def test_repro_runs_chords_then_noop_then_param_change(project):
    first = _dvc(project, "repro", "chords-eval")
    assert "Running stage 'chords'" in first and "Running stage 'chords-eval'" in first
    metrics = json.loads((project / "metrics" / "chords.json").read_text())
    assert metrics["tracks"] == 3 and 0.0 <= metrics["majmin"] <= 1.0
    plots = list((project / "plots").glob("*.png"))
    assert plots and all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)

    second = _dvc(project, "repro", "chords-eval")
    assert "Running stage" not in second

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["chords"] = {**(params.get("chords") or {}), "timing": "plugin"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _dvc(project, "repro", "chords-eval")
    assert "Running stage 'chords'" in third and "Running stage 'corpus'" not in third
