"""Chordino (the NNLS-Chroma Vamp plugin) through the ``vamp`` host, on decoded samples.

The plugin binary ships in the ``chord-extractor`` wheel (``chord_extractor/_lib/nnls-chroma.so``).
The Vamp host finds plugins through ``VAMP_PATH``, which it reads when it first scans for plugins,
so :func:`load_vamp` sets it before ``vamp`` is imported. ``chord_extractor`` itself is never
imported (it pulls in librosa and ``pkg_resources``) and its file-based extraction is not used:
samples go straight to ``vamp.collect``, no temp files.

Framing. The plugin prefers block 16384 / step 2048, tuned for 44.1 kHz. The stage runs it at
11025 Hz (:data:`stages.chords.stage.CHORDINO_SAMPLE_RATE`) with block 4096, the same 0.37 s window
and 2.7 Hz bins, so its note kernel sees the same spectrum. The step sets the cost: Chordino's
per-frame work after the FFT (NNLS, chord salience, Viterbi) dominates, so frames per second are
what is paid for. Its HMM switches chords with a fixed per-frame probability, so a longer step
makes short chords harder to keep: 93 ms steps lose majmin (0.916 vs 0.926 on the demo corpus),
67 ms (step 736) keep it at 0.926 with 69 % of the frames of 46 ms (bench/report/chords_speed.md).

Timing. The host reports each analysis frame at its window centre, so with block 16384 at
44.1 kHz the first frame sits at 0.186 s (0.186 s too for block 4096 at 11025 Hz) and every change is
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
    """Chordino's parameters (``chords.chordino`` in params.yaml); defaults are the plugin's own
    except the framing, which is for the stage's 11025 Hz (module doc)."""

    use_nnls: bool = True  # approximate transcription (NNLS) on/off
    roll_on: float = 0.0  # "bass noise threshold", % of energy, 0..5 in steps of 0.5
    tuning_mode: Literal["global", "local"] = "global"
    spectral_whitening: float = 1.0  # 0 (none) .. 1 (full)
    spectral_shape: float = 0.7  # 0.5 .. 0.9: higher = more dominant upper harmonics in the note model
    boost_n: float = 0.1  # 0 .. 1: boost of the no-chord (N) likelihood
    block_size: int = 4096  # analysis window, samples: 0.37 s at 11025 Hz, as the plugin's 16384 at 44.1 kHz
    step_size: int = 736  # hop between analysis frames, samples: 67 ms at 11025 Hz (the plugin's: 46 ms)

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


class Chordino:
    """One loaded, configured and initialised Chordino plugin, run on track after track.

    Loading and initialising the plugin builds its note kernels and chord dictionary (40-50 ms of
    CPU, as much as Chordino spends on 5 s of audio), so a worker does it once, not per track as
    ``vamp.collect`` does; :meth:`changes` resets the plugin before each track, which gives the same
    output as a fresh plugin (tests/test_chords_stage.py checks it).
    """

    def __init__(self, vamp: ModuleType, sample_rate: int, params: ChordinoParams) -> None:
        self.sample_rate = sample_rate
        self.params = params
        self._vamp = vamp
        try:
            self._plugin = vamp.vampyhost.load_plugin(
                PLUGIN_KEY, sample_rate, vamp.vampyhost.ADAPT_INPUT_DOMAIN + vamp.vampyhost.ADAPT_CHANNEL_COUNT)
            self._plugin.set_parameter_values(params.vamp_parameters())
            ready = self._plugin.initialise(1, params.step_size, params.block_size)
        except Exception as exc:  # the host raises bare Exceptions
            raise ChordinoError(f"cannot load Chordino at {sample_rate} Hz: {exc}") from exc
        if not ready:
            raise ChordinoError(f"Chordino refused block {params.block_size} / step {params.step_size} at {sample_rate} Hz")

    def changes(self, mono: np.ndarray, timing: Timing = "centred") -> list[tuple[float, str]]:
        """Chord changes of a mono signal at :attr:`sample_rate` as Chordino reports them.

        Args:
            mono: (n_samples,) float32.
        Returns:
            ``[(time_s, label), ...]`` in Chordino's spelling, times on the input's time axis (see the
            module doc for ``timing``); a final ``N`` marks the end of the analysed audio, and times
            may fall slightly outside ``[0, duration]``.
        """
        if mono.ndim != 1:
            raise ValueError(f"expected mono samples of shape (n,), got {mono.shape}")
        params, rate = self.params, self.sample_rate
        pad = params.block_size // 2 if timing == "centred" else 0
        data = np.concatenate([np.zeros(pad, dtype=np.float32), mono.astype(np.float32, copy=False)]) if pad else mono
        data = np.ascontiguousarray(data, dtype=np.float32)
        try:  # resets the plugin first
            frames = self._vamp.frames.frames_from_array(data, params.step_size, params.block_size)
            features = [result[PLUGIN_OUTPUT] for result in self._vamp.process.process_with_initialised_plugin(
                frames, rate, params.step_size, self._plugin, [PLUGIN_OUTPUT])]
        except Exception as exc:  # the host raises bare Exceptions
            raise ChordinoError(f"Chordino failed: {exc}") from exc
        shift = (pad + (params.step_size / 2 if timing == "centred" else 0.0)) / rate
        return [(float(feature["timestamp"]) - shift, str(feature["label"])) for feature in features]


def run_chordino(vamp: ModuleType, mono: np.ndarray, sample_rate: int, params: ChordinoParams,
                 timing: Timing = "centred") -> list[tuple[float, str]]:
    """:meth:`Chordino.changes` with a plugin loaded for this one call (``vamp``: from :func:`load_vamp`)."""
    return Chordino(vamp, sample_rate, params).changes(mono, timing)
