"""dvc.yaml wiring of the chords stage: `dvc repro` renders a tiny corpus, extracts chords, writes
metrics/chords.json and the plot; a re-run is a no-op; a changed chords parameter reruns only the
chords stages."""

import json
import shutil

import pytest
import yaml

from tests.dvc_project import demo_params, init_project, repo_stages, run_dvc

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if shutil.which("fluidsynth") is None:
        pytest.fail("fluidsynth is not installed (scripts/install.sh installs it)")
    params = demo_params()
    params["executor"].update(backend="serial")
    stages = repo_stages("corpus", "manifest", "chords", "chords-eval")
    return init_project(tmp_path_factory.mktemp("chordsdvc"), stages, params, copy=("pipeline", "stages"))


def test_repro_runs_chords_then_noop_then_param_change(project):
    first = run_dvc(project, "repro", "chords-eval")
    assert "Running stage 'chords'" in first and "Running stage 'chords-eval'" in first
    metrics = json.loads((project / "metrics" / "chords.json").read_text())
    assert metrics["tracks"] == 3 and 0.0 <= metrics["majmin"] <= 1.0
    plots = list((project / "plots").glob("*.png"))
    assert plots and all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)

    second = run_dvc(project, "repro", "chords-eval")
    assert "Running stage" not in second

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["chords"] = {**(params.get("chords") or {}), "timing": "plugin"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run_dvc(project, "repro", "chords-eval")
    assert "Running stage 'chords'" in third and "Running stage 'corpus'" not in third
