"""JASCO's chord vocabulary: 194 labels, ``N`` (no chord) = 0, ``UNK`` = 193, shipped as a resource.

The labels are 12 roots x 10 qualities in root position plus six slash-chord families
(:data:`music.chords.SLASH_BASS_INTERVALS`), spelled by :func:`music.chords.chord_label`.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

#: Size of JASCO's pre-defined chord vocabulary.
JASCO_CHORD_VOCAB_SIZE: int = 194
#: The label of "no chord" (index 0) and of "a chord the vocabulary cannot name" (the last index).
CHORD_NO_CHORD: str = "N"
CHORD_UNKNOWN: str = "UNK"

_RESOURCE = "resources/jasco_chord_to_index.json"


class VocabularyResourceError(ValueError):
    """The packaged vocabulary file is not the one this code expects."""


@functools.lru_cache(maxsize=1)
def load_vocabulary() -> dict[str, int]:
    """JASCO's chord label -> index mapping shipped with the package (194 entries)."""
    text = resources.files("music").joinpath(_RESOURCE).read_text(encoding="utf-8")
    vocab = json.loads(text)
    if len(vocab) != JASCO_CHORD_VOCAB_SIZE:
        raise VocabularyResourceError(
            f"music/{_RESOURCE}: expected {JASCO_CHORD_VOCAB_SIZE} labels, got {len(vocab)}")
    return vocab
