"""Fixtures and synthetic signals shared by the melody tests (this module holds no tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "deepsalience"
PARITY_FIXTURE = SHARED / "reference" / "deepsalience" / "keras_reference_outputs.npz"
JASCO_REFERENCE = SHARED / "reference" / "jasco"
SR = 22050


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """The original DeepSalience weights in ../shared (read-only); skips when absent."""
    if not (SHARED_WEIGHTS / "multif0.h5").is_file():
        pytest.skip(f"{SHARED_WEIGHTS} not available")
    return SHARED_WEIGHTS


@pytest.fixture(scope="session")
def parity_fixture() -> dict[str, np.ndarray]:
    if not PARITY_FIXTURE.is_file():
        pytest.skip(f"{PARITY_FIXTURE} not available")
    with np.load(PARITY_FIXTURE) as data:
        return {key: data[key] for key in data.files}


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def synth_melody(notes: list[tuple[int, float]], sr: int = SR, gap: float = 0.0,
                 amplitude: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A harmonic tone per (midi, seconds) note, ``gap`` seconds of silence after each.

    Returns:
        ``(audio (1, N) float32, f0 (M,) Hz at 100 fps, 0 = silent)``.
    """
    pieces, f0 = [], []
    for midi, seconds in notes:
        t = np.arange(round(seconds * sr)) / sr
        freq = midi_hz(midi)
        tone = sum(np.sin(2 * np.pi * k * freq * t) / k for k in (1, 2, 3, 4))
        fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # no clicks at the note edges
        pieces += [amplitude * tone * fade / 2.0, np.zeros(round(gap * sr))]
        f0 += [freq] * round(seconds * 100) + [0.0] * round(gap * 100)
    return np.concatenate(pieces).astype(np.float32)[None], np.asarray(f0)


def write_truth(path: Path, f0: np.ndarray) -> Path:
    """A corpus-style truth JSON holding only the melody (100 fps, 0 = unvoiced)."""
    path.write_text(json.dumps({"melody_frame_rate": 100.0, "melody": [float(x) for x in f0]}))
    return path
