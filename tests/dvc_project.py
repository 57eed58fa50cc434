"""A throwaway DVC project for the tests of dvc.yaml wiring (each stage's repro / no-op / rerun)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))


def run_dvc(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``dvc ARGS`` in ``cwd``; fails the test with DVC's output if it does not succeed."""
    proc = subprocess.run([DVC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def repo_stages(*names: str) -> dict[str, Any]:
    """The named stages of the repository's dvc.yaml (so the tests check the real wiring)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = [n for n in names if n not in stages]
    assert not missing, f"dvc.yaml has no stage(s) {missing}"
    return {name: stages[name] for name in names}


def init_project(root: Path, stages: Mapping[str, Any], params: Mapping[str, Any],
                 copy: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> Path:
    """Write dvc.yaml + params.yaml into ``root``, copy the code folders the stages depend on (and
    ``music/``, which every code folder imports), and make it a git + DVC repository."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": dict(stages)}, sort_keys=False))
    (root / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False))
    for folder in ("music", *copy):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    run_dvc(root, "init", "-q", env=env)
    run_dvc(root, "config", "core.analytics", "false", env=env)
    return root


def demo_params(**corpus: Any) -> dict[str, Any]:
    """The repository's params.yaml with a tiny corpus (``corpus`` overrides)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["corpus"].update(corpus or dict(n=3, clip_seconds=[4.0, 5.0]))
    return params
