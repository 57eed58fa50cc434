"""Songs from the music21 corpus: Bach chorales and lead sheets / folk tunes with chord symbols.

Chorales: the four voices are chordified and each beat's pitch content (duration weighted, bass
= lowest sounding note at the beat) is matched to a vocabulary chord; the soprano is the melody.
music21's own naming (``harmony.chordSymbolFigureFromChord``) is not used for this: it names each
eighth-note slice separately and gives up on incomplete chords (a D7 without its fifth is "Chord
Symbol Cannot Be Identified"), while the beat-level template match reads through passing tones.
Lead sheets: music21's parsed :class:`~music21.harmony.ChordSymbol` objects give the chords and
the tune is the melody. A segment of whole bars is cut to the requested length and the piece is
transposed by a random interval, so a few tunes still give varied keys.

Which corpus files carry chord symbols was checked for music21 10.5: only the two ``leadSheet``
scores and the two tunes of ``nottingham-dataset/reelsa-c.abc`` (quoted ABC chords). The Essen,
O'Neill's and Ryan's collections use quotes for annotations and fingerings, not chords.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

from music.chords import ROOT_NAMES, Chord, vocabulary_chord
from music.vocabulary import CHORD_NO_CHORD
from pipeline.corpus.chords import match_chord
from pipeline.corpus.song import ChordSpan, Note, Song, merge_chord_spans, monophonic, quarters_to_ticks

TEMPO_RANGES: dict[str, tuple[int, int]] = {"chorale": (60, 96), "folk": (84, 126)}
TRANSPOSE_RANGE: tuple[int, int] = (-5, 6)  # semitones, inclusive
MELODY_CENTRE = 69  # the melody is moved by octaves so that its median sits near A4
MELODY_VELOCITY, DOWNBEAT_ACCENT = 92, 10

# music21 chordKind -> vocabulary quality. Other kinds are matched from their pitches.
CHORD_KINDS: dict[str, str] = {
    "major": "maj", "minor": "min", "dominant-seventh": "7", "major-seventh": "maj7",
    "minor-seventh": "m7", "half-diminished-seventh": "m7b5", "major-sixth": "6",
    "minor-sixth": "m6", "diminished": "dim", "augmented": "aug",
}


class SourceError(RuntimeError):
    """A corpus piece cannot be turned into a clip (unreadable, too short, no chords)."""


@dataclasses.dataclass(frozen=True)
class FolkPiece:
    """A music21 corpus entry with chord symbols: path, opus number (ABC files) and a short name."""

    path: str
    number: int | None
    name: str
    title: str


FOLK_PIECES: tuple[FolkPiece, ...] = (
    FolkPiece("leadSheet/fosterBrownHair", None, "jeanie-with-the-light-brown-hair",
              "Jeanie with the Light Brown Hair"),
    FolkPiece("leadSheet/berlinAlexandersRagtime", None, "alexanders-ragtime-band", "Alexander's Ragtime Band"),
    FolkPiece("nottingham-dataset/reelsa-c", 80, "cuckoos-nest", "Cuckoo's Nest"),
    FolkPiece("nottingham-dataset/reelsa-c", 81, "little-czech-number", "Little Czech Number"),
)


@functools.lru_cache(maxsize=1)
def chorale_paths() -> tuple[str, ...]:
    """Corpus paths of the Bach chorales (``bach/bwv*.mxl``), sorted so that choices are stable."""
    from music21 import corpus

    names = sorted(p.stem for p in corpus.getComposer("bach") if p.suffix == ".mxl" and p.stem.startswith("bwv"))
    return tuple(f"bach/{name}" for name in names)


def _parse(path: str, number: int | None = None):
    from music21 import corpus, stream

    try:
        # forceSource skips music21's pickle cache: faster here and no shared cache writes between workers.
        score = corpus.parse(path, number=number, forceSource=True) if number else corpus.parse(path, forceSource=True)
    except Exception as exc:  # music21 raises many exception types for unreadable files
        raise SourceError(f"music21 corpus {path}: cannot parse ({type(exc).__name__}: {exc})") from exc
    if isinstance(score, stream.Opus):
        raise SourceError(f"music21 corpus {path}: is an opus, give a tune number")
    if not score.parts:
        raise SourceError(f"music21 corpus {path}: no parts")
    return score


@dataclasses.dataclass(frozen=True)
class Segment:
    """Whole bars ``[start, end)`` in quarter notes of the source, and the musical setting."""

    start: float
    end: float
    first_measure: int
    bars: int
    tempo_bpm: int
    time_signature: tuple[int, int]


def _choose_segment(rng: np.random.Generator, part, path: str, clip_seconds: tuple[float, float],
                    tempo_range: tuple[int, int]) -> Segment:
    """A run of whole bars whose length at a random tempo falls in ``clip_seconds``.

    Bars are taken on the metric grid (anacrusis + k bars) rather than from music21's measures,
    because chorales split measures at repeat signs and fermatas (3 + 1 beats) without moving
    the downbeats. Only the part before a change of time signature is used.
    """
    from music21 import meter

    signatures = list(part.recurse().getElementsByClass(meter.TimeSignature))
    if not signatures:
        raise SourceError(f"music21 corpus {path}: no time signature")
    signature = signatures[0]
    bar_quarters = float(signature.barDuration.quarterLength)
    changes = [float(ts.getOffsetInHierarchy(part)) for ts in signatures[1:] if ts.ratioString != signature.ratioString]
    usable_end = min([float(part.highestTime)] + changes)
    measures = list(part.getElementsByClass("Measure"))
    anacrusis = float(measures[0].duration.quarterLength) if measures else 0.0
    if anacrusis >= bar_quarters - 1e-6:
        anacrusis = 0.0
    tempo = int(rng.integers(tempo_range[0], tempo_range[1] + 1))
    bar_seconds = bar_quarters * 60.0 / tempo
    target = rng.uniform(*clip_seconds)
    bars = max(1, int(round(target / bar_seconds)))
    bars = min(max(bars, int(np.ceil(clip_seconds[0] / bar_seconds))), max(1, int(clip_seconds[1] // bar_seconds)))
    whole_bars = int((usable_end - anacrusis + 1e-6) // bar_quarters)
    if whole_bars < bars:
        raise SourceError(f"music21 corpus {path}: {whole_bars} whole bars of {signature.ratioString}, need {bars}")
    first = int(rng.integers(whole_bars - bars + 1))
    start = anacrusis + first * bar_quarters
    return Segment(start, start + bars * bar_quarters, first + (1 if anacrusis else 0), bars, tempo,
                   (signature.numerator, signature.denominator))


def _melody_notes(part, segment: Segment, transpose: int) -> list[Note]:
    """Notes of ``part`` starting inside the segment, ties merged, chords reduced to their top note."""
    from music21 import chord as m21chord, harmony

    notes = []
    for element in part.stripTies().flatten().notes:
        if isinstance(element, harmony.ChordSymbol) or element.duration.quarterLength == 0:
            continue
        offset = float(element.offset)
        if not (segment.start <= offset < segment.end):
            continue
        pitch = max(p.midi for p in element.pitches) if isinstance(element, m21chord.Chord) else element.pitch.midi
        start = quarters_to_ticks(offset - segment.start)
        end = quarters_to_ticks(min(offset + float(element.duration.quarterLength), segment.end) - segment.start)
        bar_quarters = (segment.end - segment.start) / segment.bars
        accent = DOWNBEAT_ACCENT if abs((offset - segment.start) % bar_quarters) < 1e-6 else 0
        notes.append(Note(pitch + transpose, start, end, MELODY_VELOCITY + accent))
    if not notes:
        raise SourceError("segment has no melody notes")
    median = float(np.median([n.pitch for n in notes]))
    shift = 12 * int(round((MELODY_CENTRE - median) / 12))
    return [dataclasses.replace(n, pitch=n.pitch + shift) for n in notes]


def _key_name(score, transpose: int) -> tuple[str, int, str]:
    analysed = score.analyze("key")
    tonic = (analysed.tonic.pitchClass + transpose) % 12
    return f"{ROOT_NAMES[tonic]} {analysed.mode}", tonic, analysed.mode


def chord_from_symbol(symbol) -> Chord:
    """A music21 ChordSymbol as a vocabulary chord (unknown kinds matched from their pitches)."""
    root = symbol.root().pitchClass
    bass = symbol.bass().pitchClass if symbol.bass() is not None else None
    quality = CHORD_KINDS.get(symbol.chordKind)
    if quality is not None:
        return vocabulary_chord(root, quality, bass)
    weights = np.zeros(12)
    for pitch in symbol.pitches:
        weights[pitch.pitchClass] += 1.0
    matched = match_chord(weights, bass)
    if matched is None:
        raise SourceError(f"chord symbol {symbol.figure!r} has no pitches")
    return matched


def load_lead_sheet(rng: np.random.Generator, piece: FolkPiece, clip_seconds: tuple[float, float]) -> Song:
    """A segment of a corpus tune with chord symbols, transposed by a random interval."""
    from music21 import harmony

    score = _parse(piece.path, piece.number)
    part = score.parts[0]
    segment = _choose_segment(rng, part, piece.path, clip_seconds, TEMPO_RANGES["folk"])
    transpose = int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1))
    symbols = [(float(s.offset), s) for s in part.flatten().getElementsByClass(harmony.ChordSymbol)]
    if len(symbols) < 2:
        raise SourceError(f"music21 corpus {piece.path}: fewer than two chord symbols")
    length = quarters_to_ticks(segment.end - segment.start)
    spans = []
    for i, (offset, symbol) in enumerate(symbols):
        until = symbols[i + 1][0] if i + 1 < len(symbols) else float("inf")
        if until <= segment.start or offset >= segment.end:
            continue
        label = chord_from_symbol(symbol).transposed(transpose).label
        start = quarters_to_ticks(max(offset, segment.start) - segment.start)
        end = quarters_to_ticks(min(until, segment.end) - segment.start)
        spans.append(ChordSpan(label, start, end))
    key, _, _ = _key_name(score, transpose)
    return Song(
        source=f"folk:{piece.name}", key=key, tempo_bpm=float(segment.tempo_bpm),
        time_signature=segment.time_signature, chords=merge_chord_spans(spans, length),
        melody=monophonic(_melody_notes(part, segment, transpose), length), length=length,
        facts={"piece": f"{piece.path}" + (f"#{piece.number}" if piece.number else ""), "title": piece.title,
               "first_measure": segment.first_measure, "bars": segment.bars, "transpose_semitones": transpose},
    )


def _beat_chords(chordified, segment: Segment, transpose: int) -> list[ChordSpan]:
    """One vocabulary chord per quarter-note beat of the chordified segment."""
    events = []
    for element in chordified.flatten().notes:
        start = float(element.offset)
        end = start + float(element.duration.quarterLength)
        if end > segment.start and start < segment.end:
            events.append((start, end, [p.midi for p in element.pitches]))
    spans = []
    beat = segment.start
    while beat < segment.end - 1e-9:
        weights = np.zeros(12)
        bass_midi: int | None = None
        for start, end, pitches in events:
            overlap = min(end, beat + 1.0) - max(start, beat)
            if overlap <= 0:
                continue
            for midi in pitches:
                weights[(midi + transpose) % 12] += overlap
            if start <= beat < end:  # the lowest note sounding at the beat is the bass
                bass_midi = min(pitches) if bass_midi is None else min(bass_midi, *pitches)
        chord = match_chord(weights, None if bass_midi is None else (bass_midi + transpose) % 12)
        label = CHORD_NO_CHORD if chord is None else chord.label
        spans.append(ChordSpan(label, quarters_to_ticks(beat - segment.start),
                               quarters_to_ticks(min(beat + 1.0, segment.end) - segment.start)))
        beat += 1.0
    return spans


def load_chorale(rng: np.random.Generator, path: str, clip_seconds: tuple[float, float]) -> Song:
    """A segment of a Bach chorale: chords from the four voices, the soprano as melody."""
    from music21 import stream

    score = _parse(path)
    # Some chorales add instruments (horns, continuo interludes); keep the four named voices.
    voices = [p for p in score.parts if (p.partName or "").split()[0:1] in (["Soprano"], ["Alto"], ["Tenor"], ["Bass"])]
    if len(voices) >= 3:
        score = stream.Score(voices)
    if len(score.parts) < 2:
        raise SourceError(f"music21 corpus {path}: a chorale needs at least two voices")
    segment = _choose_segment(rng, score.parts[0], path, clip_seconds, TEMPO_RANGES["chorale"])
    transpose = int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1))
    try:
        chordified = score.chordify()
    except Exception as exc:
        raise SourceError(f"music21 corpus {path}: chordify failed ({type(exc).__name__}: {exc})") from exc
    length = quarters_to_ticks(segment.end - segment.start)
    chords = merge_chord_spans(_beat_chords(chordified, segment, transpose), length)
    if all(span.label == CHORD_NO_CHORD for span in chords):
        raise SourceError(f"music21 corpus {path}: segment has no chords")
    key, _, _ = _key_name(score, transpose)
    bwv = re.sub(r"^bwv", "", path.rsplit("/", 1)[-1])
    return Song(
        source=f"chorale:bwv{bwv}", key=key, tempo_bpm=float(segment.tempo_bpm),
        time_signature=segment.time_signature, chords=chords,
        melody=monophonic(_melody_notes(score.parts[0], segment, transpose), length), length=length,
        facts={"piece": path, "first_measure": segment.first_measure, "bars": segment.bars,
               "transpose_semitones": transpose},
    )
