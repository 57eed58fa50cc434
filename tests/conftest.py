"""Shared test fixtures: synthetic audio written into ``tmp_path`` (no network, no shared data)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

# soundfile (format, subtype) per file suffix; m4a is encoded with the ffmpeg command line.
SOUNDFILE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
    "aiff": ("AIFF", "PCM_16"),
}


def tone(sample_rate: int, channels: int = 1, seconds: float = 1.0, freq: float = 440.0,
         amplitude: float = 0.5) -> np.ndarray:
    """A sine tone of shape (frames, channels) float32, the same on every channel."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


@pytest.fixture
def make_audio(tmp_path: Path) -> Callable[..., Path]:
    """``make_audio(name, fmt="wav", sample_rate=22050, channels=1, seconds=1.0, freq=440.0)``.

    Writes a sine tone into ``tmp_path / name`` in format ``fmt`` (``wav flac mp3 ogg aiff m4a``),
    whatever the name's extension, and returns the path.
    """

    def make(name: str, fmt: str = "wav", sample_rate: int = 22050, channels: int = 1,
             seconds: float = 1.0, freq: float = 440.0, data: np.ndarray | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = tone(sample_rate, channels, seconds, freq) if data is None else data
        if fmt == "m4a":
            source = tmp_path / f".{name.replace('/', '_')}.src.wav"
            sf.write(source, samples, sample_rate, format="WAV", subtype="PCM_16")
            ffmpeg_encode(source, path, "-c:a", "aac", "-movflags", "+faststart", "-f", "mp4")
            source.unlink()
        else:
            file_format, subtype = SOUNDFILE_FORMATS[fmt]
            sf.write(path, samples, sample_rate, format=file_format, subtype=subtype)
        return path

    return make


def ffmpeg_encode(source: Path, target: Path, *codec_args: str) -> None:
    """Encode with the ffmpeg binary (skips the test if ffmpeg is not installed)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg binary not installed")
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *codec_args, str(target)]
    subprocess.run(command, check=True)


@pytest.fixture
def sine() -> Callable[..., np.ndarray]:
    """The :func:`tone` generator: ``sine(sample_rate, channels=1, seconds=1.0, freq=440.0)``."""
    return tone


@pytest.fixture
def ffmpeg() -> Callable[..., None]:
    """``ffmpeg(source, target, *codec_args)``: encode with the ffmpeg binary."""
    return ffmpeg_encode


@pytest.fixture
def reference_dir() -> Path:
    """``../shared/reference`` (read-only reference data); skips the test when absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"{REFERENCE_DIR} not available")
    return REFERENCE_DIR


# The local SLURM cluster (slurm/cluster.sh start). `make test` starts it and sets
# CHORDFLOW_REQUIRE_SLURM=1, so there a missing cluster fails instead of skipping.
@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    reason = None
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30, check=False
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        reason = f"sinfo unusable: {exc}"
    else:
        states = proc.stdout.split()
        if proc.returncode != 0:
            reason = f"sinfo failed: {proc.stderr.strip()}"
        elif not any(s in ("idle", "mixed", "allocated") for s in states):
            reason = f"no usable SLURM node (states: {states})"
    if reason is None:
        return
    message = f"{reason}; start the cluster with `slurm/cluster.sh start`"
    if os.environ.get("CHORDFLOW_REQUIRE_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)
