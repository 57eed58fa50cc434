"""A synthetic test signal with known drums: a drum loop plus sustained chords.

Used by the tests (HPSS quality bounds) and the benchmark; it needs no corpus or SoundFont. The
kick is a pitch-dropping sine with a click, the snare a noise burst over a short tone, the hi-hat
high-passed noise; the chords are slowly faded-in organ-like triads held for a bar each, so they
are harmonic and sustained (what HPSS should keep out of the stem).
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: MIDI notes of the triads (C, Am, F, G), one per bar, repeating.
CHORD_NOTES: tuple[tuple[int, ...], ...] = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62))


@dataclasses.dataclass(frozen=True)
class DrumLoopMix:
    drums: np.ndarray  # (N,) float32
    chords: np.ndarray  # (N,) float32
    onsets: np.ndarray  # (K,) seconds, one per distinct hit time
    sr: int

    @property
    def mix(self) -> np.ndarray:
        return self.drums + self.chords


def _decay(n: int, sr: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * sr))


def _hit(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    if kind == "kick":
        phase = 2 * np.pi * np.cumsum(50 + 100 * np.exp(-t / 0.03)) / sr
        return np.sin(phase) * _decay(n, sr, 0.08) + 0.3 * rng.standard_normal(n) * _decay(n, sr, 0.003)
    if kind == "snare":
        return 0.6 * rng.standard_normal(n) * _decay(n, sr, 0.05) + 0.4 * np.sin(2 * np.pi * 190 * t) * _decay(n, sr, 0.04)
    noise = rng.standard_normal(n)
    return 0.4 * np.diff(noise, prepend=0.0) * _decay(n, sr, 0.015)  # differencing: a crude high-pass


def drum_loop_mix(sr: int = 32000, seconds: float = 8.0, bpm: float = 120.0, chord_gain_db: float = 6.0,
                  seed: int = 0) -> DrumLoopMix:
    """Kick on beats 1 and 3, snare on 2 and 4, hi-hat on eighths; a triad per 4/4 bar.

    ``chord_gain_db`` sets the chords' RMS relative to the drums' (positive: chords louder).
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    drums = np.zeros(n)
    eighth = 30.0 / bpm
    onsets = []
    for k in range(int(seconds / eighth)):
        start = int(round(k * eighth * sr))
        kinds = ["hat"] + (["kick"] if k % 4 == 0 else ["snare"] if k % 4 == 2 else [])
        for kind in kinds:
            hit = _hit(kind, sr, rng)[: n - start]
            drums[start : start + len(hit)] += hit
        onsets.append(k * eighth)
    t = np.arange(n) / sr
    chords = np.zeros(n)
    bar = 4 * 60.0 / bpm
    fade = int(0.15 * sr)  # slow attack and release: no percussive edge
    for b in range(int(np.ceil(seconds / bar))):
        start, stop = int(round(b * bar * sr)), min(n, int(round((b + 1) * bar * sr)))
        envelope = np.ones(stop - start)
        ramp = np.linspace(0.0, 1.0, min(fade, len(envelope)))
        envelope[: len(ramp)] = ramp
        envelope[len(envelope) - len(ramp):] = np.minimum(envelope[len(envelope) - len(ramp):], ramp[::-1])
        for note in CHORD_NOTES[b % len(CHORD_NOTES)]:
            freq = 440.0 * 2 ** ((note - 69) / 12)
            for harmonic, weight in ((1, 1.0), (2, 0.5), (3, 0.25)):
                chords[start:stop] += weight * np.sin(2 * np.pi * harmonic * freq * t[start:stop]) * envelope
    drums_rms = np.sqrt(np.mean(drums**2))
    chords *= drums_rms * 10 ** (chord_gain_db / 20) / np.sqrt(np.mean(chords**2))
    peak = max(np.max(np.abs(drums + chords)), 1e-9) / 0.9
    return DrumLoopMix((drums / peak).astype(np.float32), (chords / peak).astype(np.float32),
                       np.asarray(onsets), sr)
