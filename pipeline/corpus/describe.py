"""Text descriptions of clips, built only from the clip's recorded facts.

The phrasing varies (several sentence templates and synonyms) but is chosen with the clip's own
random generator, so the same seed always gives the same sentence.
"""

from __future__ import annotations

import numpy as np

from pipeline.corpus.drums import DRUM_STYLES

# (upper bound in BPM, adjectives) for the tempo word.
TEMPO_WORDS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (72, ("slow", "gentle", "unhurried")),
    (96, ("relaxed", "laid-back", "easygoing")),
    (116, ("moderate", "mid-tempo", "steady")),
    (136, ("upbeat", "bright", "lively")),
    (1e9, ("fast", "driving", "energetic")),
)
NO_DRUM_PHRASES = ("drumless piece", "piece without drums", "arrangement with no percussion")
TEMPLATES = (
    "{A_tempo} {groove} at {bpm} BPM in {key} with {bass}, {harmony} and {melody} melody{origin}.",
    "{Melody} carries the melody over {harmony} and {bass}; {a_tempo} {groove} in {key}, {bpm} BPM{origin}.",
    "{A_tempo} {metre} {groove} in {key} at {bpm} BPM: {harmony} chords, {bass} and {a_melody} lead{origin}.",
    "Instrumental in {key}, {bpm} BPM, {metre}: {a_tempo} {groove} featuring {melody}, {harmony} and {bass}{origin}.",
)
METRE_WORDS = {"4/4": "4/4", "3/4": "3/4", "2/4": "2/4", "2/2": "cut-time", "3/2": "3/2", "6/8": "6/8"}


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def describe(rng: np.random.Generator, *, tempo_bpm: float, key: str, time_signature: str,
             drum_style: str | None, instruments: dict[str, dict[str, object]], origin: str | None) -> str:
    """One sentence such as "An upbeat funk groove at 112 BPM in E minor with slap bass, ..."."""
    tempo_word = _pick(rng, next(words for bound, words in TEMPO_WORDS if tempo_bpm < bound))
    groove = DRUM_STYLES[drum_style].phrase if drum_style else _pick(rng, NO_DRUM_PHRASES)
    melody = str(instruments["melody"]["name"])
    fields = {
        "a_tempo": _article(tempo_word), "groove": groove, "bpm": int(round(tempo_bpm)), "key": key,
        "bass": str(instruments["bass"]["name"]), "harmony": str(instruments["harmony"]["name"]),
        "melody": melody, "a_melody": _article(melody), "metre": METRE_WORDS.get(time_signature, time_signature),
        "origin": f", {origin}" if origin else "",
    }
    fields["A_tempo"] = fields["a_tempo"][0].upper() + fields["a_tempo"][1:]
    fields["Melody"] = "The " + melody
    return _pick(rng, TEMPLATES).format(**fields)
