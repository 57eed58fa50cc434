"""Metrics files: the one writer of every ``metrics/*.json`` (and per-clip tables) the project makes.

DVC reads these as metrics and people diff them, so every file has the same form: JSON, keys
sorted, two-space indent, a final newline, written atomically. A value that is not a finite
number (a metric with nothing to measure) is written as ``null``: ``NaN`` is not JSON, and a
reader that follows the standard (DVC, ``jq``, browsers) rejects the whole file over it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_write_text

#: Indent of every metrics file.
METRICS_INDENT = 2


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def metrics_json(values: Any) -> str:
    """The text of a metrics file holding ``values`` (plain JSON types; non-finite floats -> null)."""
    return json.dumps(finite_or_none(values), indent=METRICS_INDENT, sort_keys=True, allow_nan=False) + "\n"


def write_metrics(values: Any, out: str | Path) -> Path:
    """Write ``values`` as a metrics file at ``out`` (folders created, atomic); returns the path."""
    out = Path(out)
    atomic_write_text(out, metrics_json(values))
    return out
