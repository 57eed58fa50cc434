"""The one way a benchmark reports: its figures printed as JSON and, with ``--json``, written there."""

from __future__ import annotations

import json
from pathlib import Path


def report_figures(figures: dict, json_path: str | None) -> dict:
    text = json.dumps(figures, indent=1)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")
    return figures
