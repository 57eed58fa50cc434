"""dvc.yaml wiring: `dvc repro` renders the corpus and builds the manifest; a re-run is a no-op and
a changed parameter reruns only the stages that depend on it."""

import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from tests.dvc_project import demo_params, init_project, repo_stages, run_dvc

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if shutil.which("fluidsynth") is None:
        pytest.fail("fluidsynth is not installed (scripts/install.sh installs it)")
    return init_project(tmp_path_factory.mktemp("dvcproject"), repo_stages("corpus", "manifest"),
                        demo_params(), copy=("pipeline",))


def test_repro_then_noop_then_param_change(project):
    first = run_dvc(project, "repro", "manifest")  # corpus + manifest; the stage tests cover the rest
    assert "Running stage 'corpus'" in first and "Running stage 'manifest'" in first
    manifest = pq.read_table(project / "manifests" / "demo.parquet")
    assert manifest.num_rows == 3
    assert pq.read_table(project / "manifests" / "demo.rejects.parquet").num_rows == 0

    second = run_dvc(project, "repro", "manifest")
    assert "Running stage" not in second and "up to date" in second

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["manifest"]["workers"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run_dvc(project, "repro", "manifest")
    assert "Running stage 'manifest'" in third and "Running stage 'corpus'" not in third
    # the manifest content does not depend on the worker count
    assert pq.read_table(project / "manifests" / "demo.parquet").equals(manifest)
