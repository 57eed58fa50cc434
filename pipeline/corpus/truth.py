"""Ground-truth sidecar of a clip: chords, melody, drum onsets and musical facts, in seconds.

All times come from the same integer ticks as the MIDI file, converted with the clip's constant
tempo, and are rounded to microseconds; the chord timeline covers ``[0, duration]`` without gaps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from music.frames import frames_for_seconds
from pipeline.corpus.arrange import Arrangement
from pipeline.corpus.drums import DRUM_NAMES
from pipeline.corpus.song import Note, Song

TIME_DECIMALS = 6
F0_DECIMALS = 3


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def _seconds(song: Song, ticks: int) -> float:
    return round(song.seconds(ticks), TIME_DECIMALS)


def melody_f0(notes: list[dict[str, Any]], duration: float, frame_rate: float) -> list[float]:
    """Per-frame f0 (Hz, 0 = unvoiced) of a monophonic note list; frame i is at time ``i / frame_rate``.

    Returns ``ceil(duration * frame_rate)`` values.
    """
    n_frames = frames_for_seconds(duration, frame_rate)
    f0 = np.zeros(n_frames, dtype=np.float64)
    times = np.arange(n_frames) / frame_rate
    for note in notes:
        voiced = (times >= note["start"]) & (times < note["end"])
        f0[voiced] = midi_to_hz(note["pitch"])
    return [round(float(v), F0_DECIMALS) for v in f0]


def _notes_json(song: Song, notes: tuple[Note, ...]) -> list[dict[str, Any]]:
    return [{"pitch": n.pitch, "start": _seconds(song, n.start), "end": _seconds(song, n.end), "velocity": n.velocity}
            for n in notes]


def build_truth(song: Song, arrangement: Arrangement, *, frame_rate: float, description: str,
                header: dict[str, Any]) -> dict[str, Any]:
    """The truth dictionary; ``header`` holds ids, paths and generation facts written first."""
    duration = _seconds(song, song.length)
    chords = [{"label": s.label, "start": _seconds(song, s.start), "end": _seconds(song, s.end)} for s in song.chords]
    melody_notes = _notes_json(song, song.melody)
    drums = arrangement.track("drums")
    onsets = [] if drums is None else [
        {"time": _seconds(song, n.start), "drum": DRUM_NAMES[n.pitch], "note": n.pitch, "velocity": n.velocity}
        for n in drums.notes
    ]
    numerator, denominator = song.time_signature
    return {
        **header,
        "source": song.source,
        "duration": duration,
        "tempo_bpm": round(song.exact_tempo_bpm, 6),
        "time_signature": f"{numerator}/{denominator}",
        "key": song.key,
        "drum_style": arrangement.drum_style,
        "instruments": arrangement.instruments(),
        "description": description,
        "chords": chords,
        "melody_frame_rate": frame_rate,
        "melody": melody_f0(melody_notes, duration, frame_rate),
        "melody_notes": melody_notes,
        "drum_onsets": onsets,
        "facts": song.facts,
    }


def truth_json(truth: dict[str, Any]) -> str:
    """Compact, stable serialisation (key order is fixed by :func:`build_truth`)."""
    return json.dumps(truth, ensure_ascii=False, separators=(",", ":")) + "\n"


def read_truth(path: Path) -> dict[str, Any] | None:
    """The truth dict at ``path``, or None if it is missing or unreadable (then the clip is re-rendered)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
