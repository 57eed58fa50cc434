"""A full-size JASCO 400M with random values (every name and shape of the release) loads strictly and
takes one guided Euler step over 10 s on CPU; the figures are printed (bench/bench_jasco_full_size.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jasco_fixture import FIXTURE_ROOT

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variant", ["chords_drums_melody"])
def test_a_random_400m_release_loads_and_takes_a_guided_step(tmp_path, variant):
    if not (FIXTURE_ROOT / "shapes_400m.json").is_file():
        pytest.skip("shapes_400m.json not available")
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_jasco_full_size.py"), "--variant", variant,
                             "--steps", "1", "--json", str(out)], capture_output=True, text=True, timeout=1200,
                            cwd=ROOT, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    print(json.dumps(figures))
    shapes = json.loads((FIXTURE_ROOT / "shapes_400m.json").read_text())["variants"][variant]
    assert figures["lm_parameters"] == shapes["numel_lm_excluding_codec"]
    assert len(figures["guided_step_seconds"]) == 1 and figures["audio_samples"] == 320000
