"""Compose one clip: pick its material (grammar, chorale or tune), drum style, tempo and band.

Everything is drawn from one generator seeded with ``(seed, index, attempt)``. When an attempt
fails (say a corpus piece cannot be parsed), the next attempt draws another piece of the same
kind, and later attempts fall back to the grammar, so a clip is replaced deterministically.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.corpus.arrange import Arrangement, arrange
from pipeline.corpus.config import CorpusConfig
from pipeline.corpus.describe import describe
from pipeline.corpus.drums import DRUM_STYLES, styles_for_metre
from pipeline.corpus.grammar import generate_progression, key_name
from pipeline.corpus.melody import generate_melody
from pipeline.corpus.song import TICKS_PER_QUARTER, ChordSpan, Song, merge_chord_spans, monophonic

MAX_ATTEMPTS = 4
SALT_COMPOSE = 3
WALTZ_P = 0.2          # share of grammar clips in 3/4
MAJOR_P = 0.6
SEVENTH_LEVELS = (0.0, 0.25, 0.6)  # how often a grammar clip colours its chords with 7ths/6ths
NO_DRUM_TEMPO = (66, 132)
CHORALE_DRUM_FACTOR = 0.5


@dataclasses.dataclass(frozen=True)
class Composition:
    song: Song
    arrangement: Arrangement
    description: str
    kind: str
    attempt: int


def attempt_kind(planned: str, attempt: int) -> str:
    """Source kind tried at ``attempt``: the planned kind twice (another piece), then the grammar."""
    return planned if attempt < 2 else "grammar"


def _bars_for(rng: np.random.Generator, bar_seconds: float, clip_seconds: tuple[float, float]) -> int:
    bars = int(round(rng.uniform(*clip_seconds) / bar_seconds))
    bars = max(bars, int(np.ceil(clip_seconds[0] / bar_seconds - 1e-9)))
    return max(2, min(bars, int(clip_seconds[1] / bar_seconds + 1e-9)))


def _style_for(rng: np.random.Generator, quarters_per_bar: int, tempo: float | None, p_drums: float) -> str | None:
    """A drum style fitting the metre (and the tempo if given), or None for a drumless clip."""
    styles = styles_for_metre(quarters_per_bar)
    if not styles or rng.random() >= p_drums:
        return None
    if tempo is not None:
        fitting = [s for s in styles if DRUM_STYLES[s].tempo_range[0] <= tempo <= DRUM_STYLES[s].tempo_range[1]]
        styles = fitting or styles
    return styles[int(rng.integers(len(styles)))]


def grammar_song(rng: np.random.Generator, config: CorpusConfig) -> tuple[Song, str | None]:
    """A progression from the chord grammar with a generated melody; returns (song, drum style)."""
    quarters = 3 if rng.random() < WALTZ_P else 4
    style = _style_for(rng, quarters, None, config.drum_probability)
    tempo_range = DRUM_STYLES[style].tempo_range if style else NO_DRUM_TEMPO
    tempo = int(rng.integers(tempo_range[0], tempo_range[1] + 1))
    bars = _bars_for(rng, quarters * 60.0 / tempo, config.clip_seconds)
    tonic = int(rng.integers(12))
    mode = "major" if rng.random() < MAJOR_P else "minor"
    seventh_p = SEVENTH_LEVELS[int(rng.integers(len(SEVENTH_LEVELS)))]
    progression = generate_progression(rng, tonic, mode, bars, quarters, seventh_p)
    spans, tick = [], 0
    for item in progression:
        spans.append(ChordSpan(item.label, tick, tick + item.beats * TICKS_PER_QUARTER))
        tick += item.beats * TICKS_PER_QUARTER
    length = bars * quarters * TICKS_PER_QUARTER
    chords = merge_chord_spans(spans, length)
    melody = generate_melody(rng, list(chords), tonic, mode, quarters, length)
    song = Song(
        source="grammar", key=key_name(tonic, mode), tempo_bpm=float(tempo), time_signature=(quarters, 4),
        chords=chords, melody=monophonic(melody, length), length=length,
        facts={"degrees": [item.degree for item in progression], "bars": bars, "seventh_probability": seventh_p},
    )
    return song, style


def _origin(song: Song) -> str | None:
    if song.source.startswith("chorale:"):
        return f"after a Bach chorale ({song.source.split(':', 1)[1].upper().replace('BWV', 'BWV ')})"
    if song.source.startswith("folk:"):
        return f"based on \"{song.facts.get('title', song.source.split(':', 1)[1])}\""
    return None


def compose(config: CorpusConfig, index: int, planned_kind: str, attempt: int) -> Composition:
    """Compose clip ``index`` at ``attempt`` (see module docstring); may raise for bad sources."""
    from pipeline.corpus import sources  # imports music21 lazily, only in processes that need it

    rng = np.random.default_rng([config.seed, SALT_COMPOSE, index, attempt])
    kind = attempt_kind(planned_kind, attempt)
    if kind == "grammar":
        song, style = grammar_song(rng, config)
    else:
        if kind == "chorale":
            paths = sources.chorale_paths()
            if not paths:
                raise sources.SourceError("the music21 corpus has no Bach chorales (bach/bwv*.mxl)")
            song = sources.load_chorale(rng, paths[int(rng.integers(len(paths)))], config.clip_seconds)
            p_drums = config.drum_probability * CHORALE_DRUM_FACTOR
        elif kind == "folk":
            piece = sources.FOLK_PIECES[int(rng.integers(len(sources.FOLK_PIECES)))]
            song = sources.load_lead_sheet(rng, piece, config.clip_seconds)
            p_drums = config.drum_probability
        else:
            raise ValueError(f"unknown source kind {kind!r}")
        style = _style_for(rng, song.bar_ticks // TICKS_PER_QUARTER, song.tempo_bpm, p_drums)
    arrangement = arrange(song, rng, style, kind)
    numerator, denominator = song.time_signature
    text = describe(rng, tempo_bpm=song.exact_tempo_bpm, key=song.key, time_signature=f"{numerator}/{denominator}",
                    drum_style=style, instruments=arrangement.instruments(), origin=_origin(song))
    return Composition(song, arrangement, text, kind, attempt)
