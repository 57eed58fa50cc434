"""notebooks/quickstart.ipynb is stored without outputs and runs from top to bottom (nbclient),
here against a tiny trained run (the demo checkpoint takes `make demo`; CHORDFLOW_CHECKPOINT picks it)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from studio_helpers import train_tiny_run

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
CELL_TIMEOUT_S = 600


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:60]


def test_the_notebook_runs_every_cell(tmp_path, monkeypatch):
    checkpoint = train_tiny_run(tmp_path)
    monkeypatch.setenv("CHORDFLOW_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("CHORDFLOW_NOTEBOOK_SECONDS", "2")
    monkeypatch.setenv("CHORDFLOW_NOTEBOOK_LONG_SECONDS", "5")
    monkeypatch.setenv("CHORDFLOW_NOTEBOOK_FIGURES", str(tmp_path / "figures"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    players = [o for o in outputs if "text/html" in o.get("data", {}) and "<audio" in o["data"]["text/html"]]
    assert len(players) >= 7  # text x2, chords, drums, melody, together, long
    assert (tmp_path / "figures" / "chords.png").is_file() and (tmp_path / "figures" / "spectrogram.png").is_file()
