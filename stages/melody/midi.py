"""A melody line from a MIDI file, as JASCO's melody condition (53 semitones G2..B6, one-hot per frame).

The melody is the highest note sounding at each frame's centre ((k + 0.5) / frame_rate, the frame
convention of the chords; see stages/chords/frames.py), over every non-drum track, or over the one
``track`` (index in the file) / ``channel`` asked for. Notes outside G2..B6 are moved by whole
octaves into the range, and counted. Frames with no note are unvoiced (all-zero rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.melody.constants import JASCO_LOWEST_MIDI, JASCO_N_SEMITONES, UNVOICED_INDEX
from stages.melody.jasco import one_hot

JASCO_HIGHEST_MIDI = JASCO_LOWEST_MIDI + JASCO_N_SEMITONES - 1
OCTAVE = 12


class MidiMelodyError(ValueError):
    """A MIDI file that gives no melody (unreadable, no such track/channel, no notes)."""


@dataclass(frozen=True)
class MidiMelody:
    """The melody index per frame (T,) int16 (-1 = unvoiced) and what was done to get it."""

    index: np.ndarray
    notes: int
    folded_up: int      # notes below G2 moved up by octaves
    folded_down: int    # notes above B6 moved down
    seconds: float

    def matrix(self) -> np.ndarray:
        """(T, 53) float32 one-hot (JASCO's layout transposed)."""
        return one_hot(self.index, JASCO_N_SEMITONES)

    def report(self) -> dict[str, float | int]:
        return {"notes": self.notes, "folded_up": self.folded_up, "folded_down": self.folded_down,
                "seconds": round(self.seconds, 3), "voiced_frames": int((self.index >= 0).sum())}


def fold_into_range(pitch: int) -> int:
    """A MIDI pitch moved by whole octaves into G2..B6."""
    while pitch < JASCO_LOWEST_MIDI:
        pitch += OCTAVE
    while pitch > JASCO_HIGHEST_MIDI:
        pitch -= OCTAVE
    return pitch


@dataclass(frozen=True)
class _Note:
    pitch: int
    start: float
    end: float


def midi_melody(path: str | Path, frame_rate: float, n_frames: int | None = None, track: int | None = None,
                channel: int | None = None) -> MidiMelody:
    """The highest-note melody of a MIDI file at ``frame_rate`` (``n_frames``: pad/trim to that many).

    track: one instrument, by its index as pretty_midi lists them (one per track, program and
    channel); channel: the notes of one MIDI channel (0-15); default: every non-drum note."""
    path = Path(path)
    notes = _channel_notes(path, channel) if channel is not None else _instrument_notes(path, track)
    if not notes:
        where = f" on channel {channel}" if channel is not None else f" in track {track}" if track is not None else ""
        raise MidiMelodyError(f"{path}: no melodic notes{where}")
    seconds = max(note.end for note in notes)
    frames = n_frames if n_frames is not None else int(np.ceil(seconds * frame_rate))
    centres = (np.arange(frames) + 0.5) / frame_rate
    highest = np.full(frames, -1, dtype=np.int64)
    folded_up = folded_down = 0
    for note in notes:
        pitch = fold_into_range(note.pitch)
        folded_up += note.pitch < JASCO_LOWEST_MIDI
        folded_down += note.pitch > JASCO_HIGHEST_MIDI
        sounding = (centres >= note.start) & (centres < note.end)
        highest[sounding] = np.maximum(highest[sounding], pitch)
    index = np.where(highest >= 0, highest - JASCO_LOWEST_MIDI, UNVOICED_INDEX).astype(np.int16)
    return MidiMelody(index=index, notes=len(notes), folded_up=int(folded_up), folded_down=int(folded_down),
                      seconds=float(seconds))


def _instrument_notes(path: Path, track: int | None) -> list[_Note]:
    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # pretty_midi/mido raise many types for damaged files
        raise MidiMelodyError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    instruments = [i for i in midi.instruments if not i.is_drum]
    if track is not None:
        if not 0 <= track < len(midi.instruments):
            raise MidiMelodyError(f"{path}: no track {track} (the file has {len(midi.instruments)})")
        instruments = [midi.instruments[track]]
    return [_Note(n.pitch, n.start, n.end) for i in instruments for n in i.notes if n.end > n.start]


def _channel_notes(path: Path, channel: int) -> list[_Note]:
    """Notes of one channel, times in seconds from mido's tempo-aware playback order."""
    import mido

    if not 0 <= channel <= 15:
        raise MidiMelodyError(f"{path}: channel {channel} is not a MIDI channel (0-15)")
    try:
        messages = list(mido.MidiFile(str(path)))
    except Exception as exc:
        raise MidiMelodyError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    now, open_notes, notes = 0.0, {}, []
    for message in messages:
        now += message.time
        if getattr(message, "channel", None) != channel or message.type not in ("note_on", "note_off"):
            continue
        if message.type == "note_on" and message.velocity > 0:
            open_notes.setdefault(message.note, now)
        elif message.note in open_notes:
            start = open_notes.pop(message.note)
            if now > start:
                notes.append(_Note(message.note, start, now))
    return notes
