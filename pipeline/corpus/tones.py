"""Synthetic harmonic tones: a chord as sustained notes whose pitch content is known exactly.

Used where a measurement needs audio of a known chord and nothing else (codec and analyser
checks in the benchmarks and tests), not by the corpus renderer, which plays MIDI through FluidSynth.
"""

from __future__ import annotations

import numpy as np

#: Partials of each note (amplitude 1/k), below Nyquist.
PARTIALS = 5
#: Fade-in and fade-out of the envelope, seconds.
FADE_S = 0.05


def chord_tone(pitch_classes: tuple[int, ...], seconds: float, sample_rate: int, octave: int = 4,
               amplitude: float = 0.15) -> np.ndarray:
    """A sustained chord of harmonic tones with a soft envelope: (round(seconds * sample_rate),) float32.

    Pitch class ``pc`` sounds at 440 * 2 ** ((pc - 9) / 12 + octave - 4) Hz (octave 4 holds A4)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = np.zeros_like(t)
    for pc in pitch_classes:
        f0 = 440.0 * 2 ** ((pc - 9) / 12 + (octave - 4))
        for k in range(1, PARTIALS + 1):
            if k * f0 < sample_rate / 2:
                wave += np.sin(2 * np.pi * k * f0 * t) / k
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / FADE_S)
    return (amplitude * wave * envelope / len(pitch_classes)).astype(np.float32)
