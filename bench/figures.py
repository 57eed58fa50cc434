"""The one way a benchmark reports: its figures printed as JSON and, with ``--json``, written there."""

from __future__ import annotations

import json

from pipeline.atomic import atomic_write_text


def report_figures(figures: dict, json_path: str | None) -> dict:
    text = json.dumps(figures, indent=1)
    print(text)
    if json_path:
        atomic_write_text(json_path, text + "\n")
    return figures
