"""The one metrics writer: standard JSON (non-finite -> null), sorted keys, atomic."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.metrics import finite_or_none, metrics_json, write_metrics


def test_non_finite_values_become_null_at_any_depth():
    values = {"b": [1.0, math.nan, {"c": math.inf}], "a": (-math.inf, 2), "d": np.float64("nan"), "e": "nan"}
    assert finite_or_none(values) == {"b": [1.0, None, {"c": None}], "a": [None, 2], "d": None, "e": "nan"}


def test_the_text_is_strict_json_with_sorted_keys_and_a_final_newline():
    text = metrics_json({"z": 1, "a": {"y": math.nan, "b": 0.5}})
    assert text.endswith("}\n")
    assert "NaN" not in text
    parsed = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard constant {name}"))
    assert list(parsed) == ["a", "z"] and list(parsed["a"]) == ["b", "y"] and parsed["a"]["y"] is None


def test_write_creates_folders_and_leaves_no_temporary_file(tmp_path):
    out = write_metrics({"score": 0.25}, tmp_path / "metrics" / "stage.json")
    assert json.loads(out.read_text()) == {"score": 0.25}
    assert [p.name for p in out.parent.iterdir()] == ["stage.json"]


def test_values_that_are_not_json_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "m.json"
    out.write_text("{}\n")
    with pytest.raises(TypeError):
        write_metrics({"bad": object()}, out)
    assert out.read_text() == "{}\n"
