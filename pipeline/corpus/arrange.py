"""Turn a :class:`~pipeline.corpus.song.Song` into a band arrangement and a MIDI file.

Roles: ``melody`` (a lead instrument), ``harmony`` (piano, guitar, organ, strings or pad playing
chord voicings), ``bass`` (the chord's bass note, with a style-dependent pattern) and optional
``drums`` on General MIDI channel 10. Harmony and bass never hold a note across a chord change,
so what sounds in each chord span is exactly that span's label.
"""

from __future__ import annotations

import dataclasses
import io

import mido
import numpy as np

from music.chords import QUALITIES, parse_label
from music.vocabulary import CHORD_NO_CHORD, CHORD_UNKNOWN
from pipeline.corpus.drums import drum_track
from pipeline.corpus.song import TICKS_PER_QUARTER, ChordSpan, Note, Song

DRUM_CHANNEL = 9  # General MIDI channel 10

# General MIDI programs per role: program -> name used in truth and descriptions.
MELODY_PROGRAMS: dict[int, str] = {
    73: "flute", 40: "violin", 56: "trumpet", 65: "alto sax", 66: "tenor sax", 71: "clarinet",
    68: "oboe", 22: "harmonica", 11: "vibraphone", 60: "french horn", 74: "recorder", 64: "soprano sax",
}
# FluidR3's synth leads (GM 80-87) are stereo samples in opposite phase: they vanish in a mono
# downmix (-8 to -12 dB), so they are left out; the programs above lose at most ~2 dB in mono.
HARMONY_PROGRAMS: dict[int, str] = {
    0: "grand piano", 4: "electric piano", 5: "bright electric piano", 16: "drawbar organ",
    19: "church organ", 48: "string ensemble", 89: "warm synth pad", 24: "nylon-string guitar",
    25: "steel-string guitar", 52: "choir",
}
BASS_PROGRAMS: dict[int, str] = {
    32: "upright bass", 33: "electric bass", 34: "picked bass", 35: "fretless bass", 36: "slap bass",
    38: "synth bass",
}
SUSTAINED_HARMONY = frozenset({16, 19, 48, 89, 52})  # these hold chords instead of comping
# Instrument preferences by source or drum style (other choices stay possible, see _choose_program).
PREFERRED: dict[str, dict[str, tuple[int, ...]]] = {
    "chorale": {"harmony": (19, 48, 52, 0), "melody": (73, 40, 68, 71, 74), "bass": (32, 35)},
    "funk": {"bass": (36, 33, 38), "harmony": (4, 5, 25)},
    "swing": {"bass": (32,), "harmony": (0, 4), "melody": (65, 66, 56, 11)},
    "bossa": {"bass": (32, 33), "harmony": (24, 0, 4), "melody": (73, 66, 65)},
    "four_on_the_floor": {"bass": (38, 33), "harmony": (89, 5, 48), "melody": (56, 64, 11)},
    "rock": {"bass": (34, 33), "harmony": (25, 0, 16)},
}
PREFERRED_P = 0.7

MIDI_VOLUME = 100
PAN = {"melody": 76, "harmony": 50, "bass": 64, "drums": 64}
REVERB_SEND = {"melody": 40, "harmony": 40, "bass": 10, "drums": 30}
VELOCITY = {"harmony": 64, "bass": 92}
HARMONY_RANGE = (55, 67)  # lowest voicing note lies in [55, 67)
BASS_RANGE = (33, 45)     # A1..G#2

# Comping rhythms (start, length) in quarter notes per bar, for piano/guitar harmony.
COMP_PATTERNS: dict[int, tuple[tuple[tuple[float, float], ...], ...]] = {
    4: (((0, 1.5), (1.5, 0.5), (2, 2)), ((0, 1), (1, 1), (2, 1), (3, 1)), ((0, 2), (2, 2)),
        ((0, 1.5), (1.5, 2.5))),
    3: (((0, 1), (1, 1), (2, 1)), ((0, 3),), ((0, 1.5), (1.5, 1.5))),
}
# Bass patterns: (start, length, degree) per bar; degree R = chord bass, F = fifth, O = octave.
BASS_PATTERNS: dict[str, tuple[tuple[float, float, str], ...]] = {
    "two_feel": ((0, 2, "R"), (2, 2, "F")),
    "eighths": tuple((k * 0.5, 0.5, "R") for k in range(8)),
    "funk": ((0, 0.75, "R"), (0.75, 0.25, "R"), (1.5, 0.5, "O"), (2.5, 0.5, "R"), (3, 0.5, "F"), (3.5, 0.5, "O")),
    "walking": ((0, 1, "R"), (1, 1, "T"), (2, 1, "F"), (3, 1, "O")),
    "bossa": ((0, 1.5, "R"), (1.5, 0.5, "F"), (2, 1.5, "F"), (3.5, 0.5, "R")),
    "octaves": tuple((k * 0.5, 0.5, "R" if k % 2 == 0 else "O") for k in range(8)),
    "whole": ((0, 4, "R"),),
    "waltz": ((0, 1, "R"), (2, 1, "F")),
    "waltz_whole": ((0, 3, "R"),),
}
BASS_FOR_STYLE = {
    "rock": "eighths", "funk": "funk", "shuffle": "two_feel", "swing": "walking", "bossa": "bossa",
    "halftime": "two_feel", "four_on_the_floor": "octaves", "ballad": "whole", "waltz": "waltz",
}


@dataclasses.dataclass(frozen=True)
class Track:
    """One instrument: role, GM program and name, MIDI channel and its notes (ticks)."""

    role: str
    program: int
    name: str
    channel: int
    notes: tuple[Note, ...]


@dataclasses.dataclass(frozen=True)
class Arrangement:
    tracks: tuple[Track, ...]
    drum_style: str | None

    def track(self, role: str) -> Track | None:
        return next((t for t in self.tracks if t.role == role), None)

    def instruments(self) -> dict[str, dict[str, object]]:
        return {t.role: {"program": t.program, "name": t.name, "channel": t.channel} for t in self.tracks}


def _choose_program(rng: np.random.Generator, role: str, table: dict[int, str], contexts: list[str]) -> int:
    preferred = [p for c in contexts for p in PREFERRED.get(c, {}).get(role, ())]
    if preferred and rng.random() < PREFERRED_P:
        return preferred[int(rng.integers(len(preferred)))]
    programs = sorted(table)
    return programs[int(rng.integers(len(programs)))]


def _chord_tones(label: str) -> tuple[int, int, tuple[int, ...]] | None:
    """(root, bass, upper pitch classes) of a label; None for ``N``/``UNK``."""
    if label in (CHORD_NO_CHORD, CHORD_UNKNOWN):
        return None
    chord = parse_label(label)
    tones = tuple((chord.root + i) % 12 for i in QUALITIES[chord.quality][1])
    return chord.root, chord.root if chord.bass is None else chord.bass, tones


def _voicing(tones: tuple[int, ...], previous: float) -> list[int]:
    """Close voicing of ``tones`` (lowest note in HARMONY_RANGE) nearest to the previous centre."""
    lo, hi = HARMONY_RANGE
    best: list[int] = []
    for rotation in range(len(tones)):
        order = tones[rotation:] + tones[:rotation]
        first = next(p for p in range(lo, hi) if p % 12 == order[0])
        notes = [first]
        for pc in order[1:]:
            notes.append(notes[-1] + ((pc - notes[-1]) % 12 or 12))
        if not best or abs(np.mean(notes) - previous) < abs(np.mean(best) - previous):
            best = notes
    return best


def _place(pitch_class: int, lo: int, hi: int) -> int:
    return next(p for p in range(lo, hi) if p % 12 == pitch_class % 12)


def _pattern_hits(span: ChordSpan, bar_ticks: int, pattern) -> list[tuple[int, int, tuple]]:
    """Pattern events (start, end, extra) inside ``span``, clipped at its end, with a hit at its start."""
    hits = []
    first_bar = span.start - span.start % bar_ticks
    for bar_start in range(first_bar, span.end, bar_ticks):
        for start_q, length_q, *extra in pattern:
            start = bar_start + int(round(start_q * TICKS_PER_QUARTER))
            end = min(start + int(round(length_q * TICKS_PER_QUARTER)), span.end)
            if span.start <= start < span.end:
                hits.append((start, end, tuple(extra)))
    if not hits or hits[0][0] != span.start:
        next_start = hits[0][0] if hits else span.end
        hits.insert(0, (span.start, next_start, tuple(pattern[0][2:])))
    return hits


def harmony_notes(song: Song, program: int, rng: np.random.Generator) -> list[Note]:
    """Chord voicings: held per bar for sustained instruments, a comping rhythm for the others."""
    quarters = song.bar_ticks // TICKS_PER_QUARTER
    if program in SUSTAINED_HARMONY or quarters not in COMP_PATTERNS:
        pattern: tuple = ((0, quarters),)
    else:
        options = COMP_PATTERNS[quarters]
        pattern = options[int(rng.integers(len(options)))]
    notes, centre = [], float(np.mean(HARMONY_RANGE)) + 4
    for span in song.chords:
        tones = _chord_tones(span.label)
        if tones is None:
            continue
        voicing = _voicing(tones[2], centre)
        centre = float(np.mean(voicing))
        for start, end, _ in _pattern_hits(span, song.bar_ticks, pattern):
            sounding = end - start if program in SUSTAINED_HARMONY else max(1, int((end - start) * 0.9))
            notes += [Note(p, start, start + sounding, VELOCITY["harmony"]) for p in voicing]
    return notes


def bass_notes(song: Song, style: str | None) -> list[Note]:
    """Bass line on the chord bass (slash bass or root), following the drum style's pattern."""
    quarters = song.bar_ticks // TICKS_PER_QUARTER
    name = BASS_FOR_STYLE.get(style or "", "waltz_whole" if quarters == 3 else "whole")
    pattern = BASS_PATTERNS[name]
    if quarters not in (3, 4):
        pattern = ((0, quarters, "R"),)
    notes = []
    for span in song.chords:
        tones = _chord_tones(span.label)
        if tones is None:
            continue
        root, bass, upper = tones
        base = _place(bass, *BASS_RANGE)
        degrees = {"R": base, "O": base + 12, "F": _place(root + 7, base, base + 12),
                   "T": _place(upper[1], base, base + 12)}
        for start, end, (degree,) in _pattern_hits(span, song.bar_ticks, pattern):
            notes.append(Note(degrees[degree], start, start + max(1, int((end - start) * 0.95)), VELOCITY["bass"]))
    return notes


def arrange(song: Song, rng: np.random.Generator, drum_style: str | None, context: str) -> Arrangement:
    """Choose instruments (``context`` = source kind, e.g. ``"chorale"``) and write every part."""
    contexts = [context] + ([drum_style] if drum_style else [])
    melody_program = _choose_program(rng, "melody", MELODY_PROGRAMS, contexts)
    harmony_program = _choose_program(rng, "harmony", HARMONY_PROGRAMS, contexts)
    bass_program = _choose_program(rng, "bass", BASS_PROGRAMS, contexts)
    tracks = [
        Track("melody", melody_program, MELODY_PROGRAMS[melody_program], 0, tuple(song.melody)),
        Track("harmony", harmony_program, HARMONY_PROGRAMS[harmony_program], 1,
              tuple(harmony_notes(song, harmony_program, rng))),
        Track("bass", bass_program, BASS_PROGRAMS[bass_program], 2, tuple(bass_notes(song, drum_style))),
    ]
    if drum_style:
        bars = song.length // song.bar_ticks
        crashes = (0, 4) if bars >= 8 and rng.random() < 0.5 else (0,)
        tracks.append(Track("drums", 0, "drum kit", DRUM_CHANNEL, tuple(drum_track(rng, drum_style, song.length, crashes))))
    return Arrangement(tuple(tracks), drum_style)


def midi_bytes(song: Song, tracks: tuple[Track, ...] | list[Track]) -> bytes:
    """A type-1 Standard MIDI File of ``tracks`` at the song's tempo and time signature."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    numerator, denominator = song.time_signature
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=song.microseconds_per_quarter, time=0),
        mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0),
        mido.MetaMessage("end_of_track", time=song.length),
    ]))
    for track in tracks:
        channel = track.channel
        setup = [
            mido.MetaMessage("track_name", name=track.role, time=0),
            mido.Message("program_change", channel=channel, program=track.program, time=0),
            mido.Message("control_change", channel=channel, control=7, value=MIDI_VOLUME, time=0),
            mido.Message("control_change", channel=channel, control=10, value=PAN[track.role], time=0),
            mido.Message("control_change", channel=channel, control=91, value=REVERB_SEND[track.role], time=0),
        ]
        # (tick, order, message): note-offs sort before note-ons at the same tick so repeats re-strike.
        events = []
        for note in track.notes:
            events.append((note.start, 1, mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity)))
            events.append((note.end, 0, mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1], e[2].note))
        messages, now = list(setup), 0
        for tick, _, message in events:
            messages.append(message.copy(time=tick - now))
            now = tick
        messages.append(mido.MetaMessage("end_of_track", time=max(0, song.length - now)))
        midi.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
