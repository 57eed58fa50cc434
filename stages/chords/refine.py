"""Sharpen Chordino's chord-change times with a short-window pitch-class novelty curve.

Chordino decides *which* chords sound on 67 ms frames with a 370 ms window (stage defaults), which
is what makes its labels robust, but it also means a change is only known to within a frame or
two. Once the two chords on either side of a change are known, the change itself is easy to find
precisely: it is where the notes of the new chord start and those of the old one stop.

For each change A -> B between two readable chords with different pitch-class sets, take short
Hann windows (46 ms, every 2.9 ms at the stage's 11025 Hz) within ``radius_s`` of Chordino's time, measure the
log-compressed magnitude of the pitch classes only B has ("new") and only A has ("gone"), and put
the change where ``mean(new) - mean(gone)`` rises most steeply (a centred difference over
``2 * span`` hops). Changes next to ``N``/``UNK``, or between chords with the same pitch classes
(``C`` -> ``C/E``), keep Chordino's time.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from music.chords import QUALITIES, parse_chord
from pipeline.config import ConfigError
from stages.chords.frames import Segment

# Frequency band whose FFT bins vote for pitch classes: bass to the top of typical accompaniment.
BAND_LOW_HZ = 55.0
BAND_HIGH_HZ = 2000.0
# log1p(COMPRESSION * magnitude / local max): soft onsets count, loud attacks do not swamp them.
COMPRESSION = 100.0
# A refined change stays this far (s) from its neighbours, so no segment collapses.
MIN_SEGMENT_S = 0.02


@dataclasses.dataclass(frozen=True)
class RefineParams:
    """``chords.refine`` in params.yaml."""

    enabled: bool = True
    window: int = 512  # samples of each short analysis window (46 ms at 11025 Hz; scale it with the rate)
    hop: int = 32  # samples between windows (2.9 ms at 11025 Hz)
    span: int = 4  # the rise is measured over +-span hops
    radius_s: float = 0.12  # how far from Chordino's time a change may move

    def __post_init__(self) -> None:
        if self.window < 256 or self.hop < 1 or self.span < 1 or self.radius_s <= 0:
            raise ConfigError("chords.refine: need window >= 256, hop >= 1, span >= 1, radius_s > 0")


def pitch_class_matrix(window: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The rFFT bins of the band and a (12, bins) 0/1 matrix assigning each to its pitch class."""
    freqs = np.fft.rfftfreq(window, 1.0 / sample_rate)
    bins = np.flatnonzero((freqs >= BAND_LOW_HZ) & (freqs <= BAND_HIGH_HZ))
    pitch_class = np.round(12 * np.log2(freqs[bins] / 440.0) + 69).astype(int) % 12
    matrix = np.zeros((12, len(bins)))
    matrix[pitch_class, np.arange(len(bins))] = 1.0
    return bins, matrix


def pitch_class_energy(mono: np.ndarray, sample_rate: int, centres_s: np.ndarray, window: int) -> np.ndarray:
    """(len(centres), 12) pitch-class magnitude of Hann windows centred at ``centres_s`` (zero-padded
    outside the signal)."""
    bins, matrix = pitch_class_matrix(window, sample_rate)
    offsets = np.arange(window) - window // 2
    index = np.round(centres_s * sample_rate).astype(np.int64)[:, None] + offsets[None, :]
    inside = (index >= 0) & (index < len(mono))
    frames = np.where(inside, mono[np.clip(index, 0, max(len(mono) - 1, 0))], 0.0) * np.hanning(window)
    spectrum = np.abs(np.fft.rfft(frames, axis=1))[:, bins]
    return np.sqrt(np.square(spectrum) @ matrix.T)


def _pitch_classes(label: str) -> frozenset[int] | None:
    chord = parse_chord(label)
    if chord is None or not chord.known:
        return None
    tones = {(chord.root + i) % 12 for i in QUALITIES[chord.quality][1]}
    if chord.bass is not None:
        tones.add(chord.bass)
    return frozenset(tones)


def refine_changes(mono: np.ndarray, sample_rate: int, segments: list[Segment], params: RefineParams) -> list[Segment]:
    """``segments`` (tiling the track, as from the stage) with sharpened change times."""
    if not params.enabled or len(segments) < 2 or mono.size == 0:
        return segments
    hop_s = params.hop / sample_rate
    out = [list(segment) for segment in segments]
    for i in range(1, len(out)):
        before, after = _pitch_classes(out[i - 1][0]), _pitch_classes(out[i][0])
        if before is None or after is None:
            continue
        new, gone = sorted(after - before), sorted(before - after)
        if not new and not gone:
            continue
        change = out[i][1]
        low = max(out[i - 1][1] + MIN_SEGMENT_S, change - params.radius_s)
        high = min(out[i][2] - MIN_SEGMENT_S, change + params.radius_s)
        if high <= low:
            continue
        margin = params.span * hop_s
        centres = np.arange(low - margin, high + margin + hop_s / 2, hop_s)
        if len(centres) <= 2 * params.span:
            continue
        energy = pitch_class_energy(mono, sample_rate, centres, params.window)
        energy = np.log1p(COMPRESSION * energy / max(float(energy.max()), 1e-12))
        novelty = np.zeros(len(centres))
        if new:
            novelty += energy[:, new].mean(axis=1)
        if gone:
            novelty -= energy[:, gone].mean(axis=1)
        rise = novelty[2 * params.span:] - novelty[: -2 * params.span]  # rise[j] is centred on centres[j + span]
        if rise.max() <= 0.0:
            continue  # nothing starts here (e.g. silence): keep Chordino's time
        time_s = float(np.clip(centres[params.span + int(np.argmax(rise))], low, high))
        out[i][1] = out[i - 1][2] = time_s
    return [(label, start, end) for label, start, end in out]
