"""Programmatic drum patterns in several styles, on General MIDI percussion (channel 10).

Each style is a one-bar grid per drum written as a string: ``X`` accent, ``x`` normal hit,
``o`` ghost note, ``.`` rest. Straight styles use 16th notes (4 steps per quarter); shuffle,
swing and the waltz use eighth-note triplets (3 steps per quarter), which is what makes them swing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.corpus.song import TICKS_PER_QUARTER, Note

#: General MIDI percussion key numbers of the drums used here.
DRUM_NOTES: dict[str, int] = {
    "kick": 36, "side_stick": 37, "snare": 38, "clap": 39, "closed_hihat": 42, "pedal_hihat": 44,
    "open_hihat": 46, "crash": 49, "ride": 51, "tambourine": 54, "shaker": 70,
}
DRUM_NAMES: dict[int, str] = {note: name for name, note in DRUM_NOTES.items()}
STEP_VELOCITY: dict[str, int] = {"X": 112, "x": 92, "o": 52}
VELOCITY_JITTER = 6
HIT_TICKS = TICKS_PER_QUARTER // 4  # note length; GM drums ring regardless of note-off


@dataclasses.dataclass(frozen=True)
class DrumStyle:
    """A one-bar drum pattern: ``lanes`` maps drum name -> step string of ``quarters * steps_per_quarter``."""

    name: str
    quarters: int
    steps_per_quarter: int
    lanes: dict[str, str]
    tempo_range: tuple[int, int]
    phrase: str  # how descriptions name the groove

    def __post_init__(self) -> None:
        steps = self.quarters * self.steps_per_quarter
        for drum, lane in self.lanes.items():
            if drum not in DRUM_NOTES or len(lane) != steps or set(lane) - set(STEP_VELOCITY) - {"."}:
                raise ValueError(f"drum style {self.name}: bad lane {drum!r} {lane!r}")


DRUM_STYLES: dict[str, DrumStyle] = {s.name: s for s in (
    DrumStyle("rock", 4, 4, {
        "kick":         "X.......X.x.....",
        "snare":        "....X.......X...",
        "closed_hihat": "x.x.x.x.x.x.x.x.",
    }, (92, 140), "rock beat"),
    DrumStyle("funk", 4, 4, {
        "kick":         "X..x..x...X..x..",
        "snare":        "....X..o.o..X..o",
        "closed_hihat": "xoxoxoxoxoxoxoxo",
    }, (90, 118), "funk groove"),
    DrumStyle("shuffle", 4, 3, {
        "kick":         "X.....x.....",
        "snare":        "...X.....X..",
        "closed_hihat": "x.xx.xx.xx.x",
    }, (80, 124), "shuffle"),
    DrumStyle("swing", 4, 3, {
        "ride":         "x..x.xx..x.x",
        "pedal_hihat":  "...x.....x..",
        "kick":         "o.....o.....",
        "snare":        "........o..o",
    }, (100, 160), "swing feel"),
    DrumStyle("bossa", 4, 4, {
        "kick":         "X..xX..xX..xX..x",
        "side_stick":   "x..x..x...x..x..",
        "closed_hihat": "x.x.x.x.x.x.x.x.",
    }, (120, 150), "bossa nova rhythm"),
    DrumStyle("halftime", 4, 4, {
        "kick":         "X.........x.....",
        "snare":        "........X.......",
        "closed_hihat": "x.x.x.x.x.x.x.x.",
    }, (68, 96), "half-time groove"),
    DrumStyle("four_on_the_floor", 4, 4, {
        "kick":         "X...X...X...X...",
        "clap":         "....x.......x...",
        "closed_hihat": "x...x...x...x...",
        "open_hihat":   "..x...x...x...x.",
    }, (116, 128), "four-on-the-floor dance beat"),
    DrumStyle("ballad", 4, 4, {
        "kick":         "X.......x.......",
        "side_stick":   "....x.......x...",
        "closed_hihat": "x.o.x.o.x.o.x.o.",
    }, (60, 84), "ballad groove"),
    DrumStyle("waltz", 3, 3, {
        "kick":         "X........",
        "snare":        "...x..x..",
        "closed_hihat": "x..x..x..",
    }, (84, 168), "waltz"),
)}


def styles_for_metre(quarters_per_bar: int) -> list[str]:
    """Styles that fit a bar of ``quarters_per_bar`` quarter notes (2/4 and 2/2 use 4/4 patterns)."""
    if quarters_per_bar == 3:
        return ["waltz"]
    if quarters_per_bar in (2, 4):
        return sorted(name for name, style in DRUM_STYLES.items() if style.quarters == 4)
    return []


def drum_track(rng: np.random.Generator, style_name: str, length: int, crash_bars: tuple[int, ...] = (0,)) -> list[Note]:
    """Drum hits of ``style_name`` repeated over ``length`` ticks; a crash on each of ``crash_bars``.

    Returns notes on GM percussion keys, sorted by time (ticks).
    """
    style = DRUM_STYLES[style_name]
    bar_ticks = style.quarters * TICKS_PER_QUARTER
    step_ticks = TICKS_PER_QUARTER // style.steps_per_quarter
    notes: list[Note] = []
    for bar_index, bar_start in enumerate(range(0, length, bar_ticks)):
        for drum in sorted(style.lanes):
            for step, mark in enumerate(style.lanes[drum]):
                tick = bar_start + step * step_ticks
                if mark == "." or tick >= length:
                    continue
                velocity = STEP_VELOCITY[mark] + int(rng.integers(-VELOCITY_JITTER, VELOCITY_JITTER + 1))
                notes.append(Note(DRUM_NOTES[drum], tick, min(tick + HIT_TICKS, length), velocity))
        if bar_index in crash_bars:
            notes.append(Note(DRUM_NOTES["crash"], bar_start, min(bar_start + HIT_TICKS, length), 100))
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes
