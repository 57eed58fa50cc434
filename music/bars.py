"""Chords as musicians write them — by bars or by beats — converted once to a (label, start) timeline.

Bars: ``"C | G | Am F | F G7"``: bars separated by ``|``, the chords of a bar split it evenly (a
bar of 4 beats with 2 chords: 2 beats each; 3 chords in 4/4 does not divide and is an error), or
each chord says its length in beats, ``"C:3 G:1"`` (the lengths must fill the bar). ``%`` repeats
the previous bar; ``N`` is no chord. Beats: ``"C:2 G:2 Am:4"`` without any ``|``: each chord lasts
its beats, whatever the bars.

Time: ``bpm`` counts the meter's beat unit, the lower number (3/4 at 90: 90 quarter notes per
minute; 6/8 at 180: 180 eighths). ``pickup`` beats make the first bar written a partial bar (an
anacrusis) of that length; ``offset`` seconds of silence (no chord) come before everything. Bad
input raises :class:`BarsError` naming the token, its bar and its character position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from music.chords import ChordError, parse_label
from music.vocabulary import CHORD_NO_CHORD

#: Tempi accepted (beats of the meter's unit per minute).
BPM_RANGE = (20.0, 400.0)
#: Meter denominators accepted (whole .. thirty-second notes) and the largest numerator.
METER_UNITS = (1, 2, 4, 8, 16, 32)
MAX_BEATS_PER_BAR = 32
BAR_SEPARATOR = "|"
REPEAT_BAR = "%"
_TOKEN = re.compile(r"\S+")


class BarsError(ValueError):
    """Chords by bars or beats that cannot be read; the message names the token and where it is."""


@dataclass(frozen=True)
class Meter:
    beats: int   # per bar
    unit: int    # the note value of one beat (4 = quarter)

    @classmethod
    def parse(cls, text: str) -> "Meter":
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not found:
            raise BarsError(f"meter {text!r}: expected beats/unit such as 4/4, 3/4 or 6/8")
        beats, unit = int(found.group(1)), int(found.group(2))
        if not 1 <= beats <= MAX_BEATS_PER_BAR or unit not in METER_UNITS:
            raise BarsError(f"meter {text!r}: beats must be 1..{MAX_BEATS_PER_BAR} and the unit one of {METER_UNITS}")
        return cls(beats, unit)


@dataclass(frozen=True)
class _Token:
    text: str
    position: int   # character offset in the input
    bar: int        # 1-based bar number (0 in the beats form)


def chords_timeline(text: str, bpm: float, meter: str = "4/4", pickup: float = 0.0,
                    offset: float = 0.0) -> list[tuple[str, float]]:
    """``"C | G | Am F"`` (bars) or ``"C:2 G:2"`` (beats) -> ``[(label, start_seconds), ...]``.

    Consecutive equal chords are merged (a held chord is one change); ``N`` is kept as a change."""
    if not isinstance(text, str) or not text.strip():
        raise BarsError("chords: empty chord text")
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not BPM_RANGE[0] <= float(bpm) <= BPM_RANGE[1]:
        raise BarsError(f"bpm {bpm!r} is out of range {BPM_RANGE[0]:g}..{BPM_RANGE[1]:g}")
    if not 0 <= float(offset) <= 3600:
        raise BarsError(f"offset {offset!r} s is out of range 0..3600")
    parsed_meter = Meter.parse(meter)
    beat_seconds = Fraction(60) / Fraction(str(float(bpm)))
    if BAR_SEPARATOR not in text and any(":" in t for t in text.split()):
        spans = _beats_form(text)
    else:
        spans = _bars_form(text, parsed_meter, Fraction(str(float(pickup))))
    timeline: list[tuple[str, float]] = []
    start = Fraction(str(float(offset)))
    for label, beats in spans:
        if not timeline or timeline[-1][0] != label:
            timeline.append((label, float(start)))
        start += beats * beat_seconds
    if offset and timeline and timeline[0][0] != CHORD_NO_CHORD:
        timeline.insert(0, (CHORD_NO_CHORD, 0.0))
    return timeline


def _tokens(text: str) -> list[list[_Token]]:
    """Tokens grouped by bar (split on ``|``), with their character positions."""
    bars, current, number = [], [], 1
    for match in re.finditer(r"\||[^\s|]+", text):
        if match.group() == BAR_SEPARATOR:
            bars.append(current)
            current, number = [], number + 1
        else:
            current.append(_Token(match.group(), match.start(), number))
    bars.append(current)
    return bars


def _where(token: _Token) -> str:
    return f"token {token.text!r} (bar {token.bar}, character {token.position + 1})" if token.bar else \
        f"token {token.text!r} (character {token.position + 1})"


def _label(token: _Token, text: str) -> str:
    if text == CHORD_NO_CHORD:
        return text
    try:
        parse_label(text)
    except ChordError as exc:
        raise BarsError(f"{_where(token)}: not a chord label ({exc})") from None
    return text


def _split(token: _Token) -> tuple[str, Fraction | None]:
    """``"C:2"`` -> ("C", 2); ``"C"`` -> ("C", None)."""
    label, sep, beats = token.text.partition(":")
    if not sep:
        return _label(token, label), None
    try:
        value = Fraction(beats)
    except (ValueError, ZeroDivisionError):
        raise BarsError(f"{_where(token)}: beats {beats!r} is not a number") from None
    if value <= 0:
        raise BarsError(f"{_where(token)}: beats must be > 0")
    return _label(token, label), value


def _beats_form(text: str) -> list[tuple[str, Fraction]]:
    spans = []
    for match in _TOKEN.finditer(text):
        token = _Token(match.group(), match.start(), 0)
        label, beats = _split(token)
        if beats is None:
            raise BarsError(f"{_where(token)}: in the beats form (no '|') every chord needs its length, e.g. C:2")
        spans.append((label, beats))
    return spans


def _bars_form(text: str, meter: Meter, pickup: Fraction) -> list[tuple[str, Fraction]]:
    if pickup < 0 or pickup >= meter.beats:
        raise BarsError(f"pickup {float(pickup):g} beats: must be 0 <= pickup < {meter.beats} (the bar's beats)")
    spans: list[tuple[str, Fraction]] = []
    previous: list[tuple[str, Fraction]] | None = None
    for index, bar in enumerate(_tokens(text)):
        length = pickup if index == 0 and pickup else Fraction(meter.beats)
        if not bar:
            raise BarsError(f"bar {index + 1}: empty (two '|' with nothing between, or a '|' at either end)")
        if len(bar) == 1 and bar[0].text == REPEAT_BAR:
            if previous is None:
                raise BarsError(f"{_where(bar[0])}: '%' repeats the previous bar, and there is none")
            if sum(b for _, b in previous) != length:
                raise BarsError(f"{_where(bar[0])}: the bar it repeats has another length")
            spans.extend(previous)
            continue
        parts = [_split(token) for token in bar]
        given = [b for _, b in parts if b is not None]
        if given and len(given) != len(parts):
            raise BarsError(f"bar {index + 1}: give every chord of the bar its beats, or none")
        if given:
            if sum(given) != length:
                raise BarsError(f"bar {index + 1}: the beats {' + '.join(f'{float(b):g}' for b in given)} "
                                f"do not fill its {float(length):g} beats")
            current = [(label, b) for label, b in parts]
        else:
            each = length / len(parts)
            if each.denominator != 1:
                raise BarsError(f"bar {index + 1}: {len(parts)} chords do not divide its {float(length):g} beats evenly; "
                                f"give their lengths, e.g. {bar[0].text}:2")
            current = [(label, each) for label, _ in parts]
        spans.extend(current)
        previous = current
    return spans


#: JASCO's written form of a timeline: ``(C, 0.0), (D, 2.0)`` (label, start second).
_PAIR = re.compile(r"\(\s*([^,()\s]+)\s*,\s*([^()\s]+?)\s*\)")


def chords_from_pairs(text: str) -> list[tuple[str, float]]:
    """``"(C, 0.0), (D, 2.0)"`` (JASCO's app) -> ``[("C", 0.0), ("D", 2.0)]``.

    Starts must be numbers that rise strictly; anything between the pairs but commas and spaces is an
    error naming its character position."""
    if not isinstance(text, str) or not text.strip():
        raise BarsError("chords: empty chord text")
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):  # a pasted Python list
        text = " " + text[1:-1] + " "
    timeline: list[tuple[str, float]] = []
    position = 0
    for match in _PAIR.finditer(text):
        between = text[position: match.start()]
        if between.strip(" ,\n\t"):
            raise BarsError(f"chords: {between.strip()!r} at character {position + 1} is not a (label, start) pair")
        label, start_text = match.group(1), match.group(2)
        token = _Token(match.group(), match.start(), 0)
        _label(token, label)
        try:
            start = float(start_text)
        except ValueError:
            raise BarsError(f"{_where(token)}: start {start_text!r} is not a number of seconds") from None
        if not 0 <= start <= 3600 or (timeline and start <= timeline[-1][1]):
            raise BarsError(f"{_where(token)}: starts must lie in 0..3600 s and rise strictly (this one is {start:g} s)")
        timeline.append((label, start))
        position = match.end()
    rest = text[position:]
    if rest.strip(" ,\n\t"):
        raise BarsError(f"chords: {rest.strip()!r} at character {position + 1} is not a (label, start) pair")
    return timeline
