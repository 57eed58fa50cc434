"""dvc.yaml wiring: `dvc repro` renders the corpus and builds the manifest; a re-run is a no-op and
a changed parameter reruns only the stages that depend on it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))


def _dvc(cwd, *args):
    proc = subprocess.run([DVC, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if shutil.which("fluidsynth") is None:
        pytest.fail("fluidsynth is not installed (scripts/install.sh installs it)")
    root = tmp_path_factory.mktemp("dvcproject")
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copytree(REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["corpus"].update(n=3, clip_seconds=[4.0, 5.0])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    _dvc(root, "config", "core.analytics", "false")
    return root


def test_repro_then_noop_then_param_change(project):
    first = _dvc(project, "repro", "manifest")  # corpus + manifest; the stage tests cover the rest
    assert "Running stage 'corpus'" in first and "Running stage 'manifest'" in first
    manifest = pq.read_table(project / "manifests" / "demo.parquet")
    assert manifest.num_rows == 3
    assert pq.read_table(project / "manifests" / "demo.rejects.parquet").num_rows == 0

    second = _dvc(project, "repro", "manifest")
    assert "Running stage" not in second and "up to date" in second

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["manifest"]["workers"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _dvc(project, "repro", "manifest")
    assert "Running stage 'manifest'" in third and "Running stage 'corpus'" not in third
    # the manifest content does not depend on the worker count
    assert pq.read_table(project / "manifests" / "demo.parquet").equals(manifest)
