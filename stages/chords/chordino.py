"""Chordino (the NNLS-Chroma Vamp plugin) through the ``vamp`` host, on decoded samples.

The plugin binary ships in the ``chord-extractor`` wheel (``chord_extractor/_lib/nnls-chroma.so``).
The Vamp host finds plugins through ``VAMP_PATH``, which it reads when it first scans for plugins,
so :func:`load_vamp` sets it before ``vamp`` is imported. ``chord_extractor`` itself is never
imported (it pulls in librosa and ``pkg_resources``) and its file-based extraction is not used:
samples go straight to ``vamp.collect``, no temp files.

Timing. With its preferred framing (block 16384, step 2048 at 44.1 kHz) the host reports each
analysis frame at its window centre, so the first frame sits at 0.186 s and every change is
reported at the first frame that carries the new chord. ``timing: centred`` (default) pads
block/2 zeros in front so frame k is centred at ``k * step / sr`` of the original audio (the
chords of the first 0.19 s are estimated, not assumed to be N), and places each change half a
step earlier, midway between the last frame of the old chord and the first of the new one (the
unbiased estimate of a change that falls anywhere between them). ``timing: plugin`` keeps the
plugin's own timestamps (what JASCO's extraction stored).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np

from pipeline.config import ConfigError

PLUGIN_KEY = "nnls-chroma:chordino"
PLUGIN_OUTPUT = "simplechord"
PLUGIN_LIBRARY = "nnls-chroma.so"
#: Package whose wheel carries the plugin binary, and the folder inside it.
PLUGIN_PACKAGE = "chord_extractor"
PLUGIN_PACKAGE_DIR = "_lib"

Timing = Literal["centred", "plugin"]


class ChordinoError(RuntimeError):
    """The Chordino plugin cannot be found, loaded or run."""


@dataclasses.dataclass(frozen=True)
class ChordinoParams:
    """Chordino's parameters (``chords.chordino`` in params.yaml); defaults are the plugin's own."""

    use_nnls: bool = True  # approximate transcription (NNLS) on/off
    roll_on: float = 0.0  # "bass noise threshold", % of energy, 0..5 in steps of 0.5
    tuning_mode: Literal["global", "local"] = "global"
    spectral_whitening: float = 1.0  # 0 (none) .. 1 (full)
    spectral_shape: float = 0.7  # 0.5 .. 0.9: higher = more dominant upper harmonics in the note model
    boost_n: float = 0.1  # 0 .. 1: boost of the no-chord (N) likelihood
    block_size: int = 16384  # analysis window, samples (the plugin's preferred size)
    step_size: int = 2048  # hop between analysis frames, samples (the plugin's preferred step)

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.roll_on <= 5.0 and float(self.roll_on * 2).is_integer(), "roll_on must be 0..5 in steps of 0.5"),
            (0.0 <= self.spectral_whitening <= 1.0, "spectral_whitening must be in [0, 1]"),
            (0.5 <= self.spectral_shape <= 0.9, "spectral_shape must be in [0.5, 0.9]"),
            (0.0 <= self.boost_n <= 1.0, "boost_n must be in [0, 1]"),
            (self.block_size >= 1024 and self.block_size & (self.block_size - 1) == 0,
             "block_size must be a power of two >= 1024"),
            (0 < self.step_size <= self.block_size, "step_size must be in (0, block_size]"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError(f"chords.chordino: {'; '.join(problems)}")

    def vamp_parameters(self) -> dict[str, float]:
        """The plugin's parameter identifiers and values."""
        return {
            "useNNLS": float(self.use_nnls),
            "rollon": float(self.roll_on),
            "tuningmode": 0.0 if self.tuning_mode == "global" else 1.0,
            "whitening": float(self.spectral_whitening),
            "s": float(self.spectral_shape),
            "boostn": float(self.boost_n),
            "usehartesyntax": 0.0,  # labels are normalised by music.chords
        }


def default_plugin_dir() -> Path:
    """The folder of ``nnls-chroma.so`` inside the installed ``chord-extractor`` wheel."""
    spec = importlib.util.find_spec(PLUGIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ChordinoError(f"package {PLUGIN_PACKAGE!r} (pip: chord-extractor) is not installed; it ships {PLUGIN_LIBRARY}")
    return Path(next(iter(spec.submodule_search_locations))) / PLUGIN_PACKAGE_DIR


def load_vamp(plugin_dir: str | os.PathLike | None = None) -> ModuleType:
    """Import the Vamp host with ``plugin_dir`` (default: the wheel's) on ``VAMP_PATH``, and check
    that Chordino is found. Raises :class:`ChordinoError` naming the folder otherwise."""
    folder = Path(plugin_dir) if plugin_dir else default_plugin_dir()
    if not (folder / PLUGIN_LIBRARY).is_file():
        raise ChordinoError(f"{folder / PLUGIN_LIBRARY}: Chordino plugin library not found")
    entries = [p for p in os.environ.get("VAMP_PATH", "").split(os.pathsep) if p]
    if str(folder) not in entries:
        os.environ["VAMP_PATH"] = os.pathsep.join([str(folder), *entries])  # ours first: the pinned build
    import vamp

    if PLUGIN_KEY not in vamp.list_plugins():
        raise ChordinoError(
            f"Vamp host does not list {PLUGIN_KEY} (VAMP_PATH={os.environ['VAMP_PATH']}); if vamp was imported "
            "before VAMP_PATH was set, set VAMP_PATH in the environment instead"
        )
    return vamp


def run_chordino(vamp: ModuleType, mono: np.ndarray, sample_rate: int, params: ChordinoParams,
                 timing: Timing = "centred") -> list[tuple[float, str]]:
    """Chord changes of a mono signal as Chordino reports them.

    Args:
        vamp: the module returned by :func:`load_vamp`.
        mono: (n_samples,) float32.
    Returns:
        ``[(time_s, label), ...]`` in Chordino's spelling, times on the input's time axis (see the
        module doc for ``timing``); a final ``N`` marks the end of the analysed audio, and times
        may fall slightly outside ``[0, duration]``.
    """
    if mono.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {mono.shape}")
    pad = params.block_size // 2 if timing == "centred" else 0
    data = np.concatenate([np.zeros(pad, dtype=np.float32), mono.astype(np.float32, copy=False)]) if pad else mono
    try:
        result = vamp.collect(np.ascontiguousarray(data, dtype=np.float32), sample_rate, PLUGIN_KEY,
                              output=PLUGIN_OUTPUT, parameters=params.vamp_parameters(),
                              block_size=params.block_size, step_size=params.step_size)
    except Exception as exc:  # the host raises bare Exceptions
        raise ChordinoError(f"Chordino failed: {exc}") from exc
    shift = (pad + (params.step_size / 2 if timing == "centred" else 0.0)) / sample_rate
    return [(float(feature["timestamp"]) - shift, str(feature["label"])) for feature in result.get("list", [])]
