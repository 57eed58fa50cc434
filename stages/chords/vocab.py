"""Chord vocabularies: label <-> index tables with ``N`` and ``UNK`` reserved.

A vocabulary is JSON ``{label: index}`` with indices 0..V-1, ``N`` (no chord) = 0 and ``UNK`` = V-1,
the layout of JASCO's pre-defined table (V = 194, shipped as
``music/resources/jasco_chord_to_index.json``). :meth:`Vocabulary.encode` normalises a label
first (enharmonics, synonyms, slash basses; :mod:`music.chords`), falls back to the
root-position chord when only the slash bass is missing from the table (if allowed), and maps
anything else to ``UNK``; every fallback and every ``UNK`` is counted, never a KeyError.

:func:`build_vocabulary` makes a new table from label frequencies, deterministically.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Iterable, Mapping

from music.chords import normalise_label, root_position
from music.vocabulary import CHORD_NO_CHORD, CHORD_UNKNOWN, JASCO_CHORD_VOCAB_SIZE, load_vocabulary
from pipeline.atomic import atomic_write_text

#: Name of the built-in vocabulary in ``params.yaml`` (``chords.vocabulary: jasco``).
JASCO_VOCABULARY = "jasco"
#: Index of ``N`` in every vocabulary.
NO_CHORD_INDEX = 0


class VocabularyError(ValueError):
    """A vocabulary file is missing or malformed."""


class Vocabulary:
    """An immutable label <-> index table (``N`` = 0, ``UNK`` = last) with counters of fallbacks."""

    def __init__(self, mapping: Mapping[str, int], name: str = "custom", slash_fallback: bool = True) -> None:
        _check_mapping(mapping, name)
        self.name = name
        self.slash_fallback = slash_fallback
        self._index = {label: int(i) for label, i in mapping.items()}
        self._labels = sorted(self._index, key=self._index.__getitem__)
        self.unk_index = len(self._labels) - 1
        #: normalised label -> times it was mapped to UNK by :meth:`encode`
        self.unknown: collections.Counter[str] = collections.Counter()
        #: normalised label -> times its slash bass was dropped to find it
        self.bass_dropped: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ construction
    @classmethod
    def jasco(cls, slash_fallback: bool = True) -> "Vocabulary":
        """JASCO's pre-defined 194-label vocabulary."""
        return cls(load_vocabulary(), name=JASCO_VOCABULARY, slash_fallback=slash_fallback)

    @classmethod
    def from_json(cls, path: str | Path, slash_fallback: bool = True) -> "Vocabulary":
        path = Path(path)
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VocabularyError(f"{path}: vocabulary file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VocabularyError(f"{path}: not a JSON vocabulary: {exc}") from None
        if not isinstance(mapping, dict):
            raise VocabularyError(f"{path}: expected a JSON object {{label: index}}")
        return cls(mapping, name=str(path), slash_fallback=slash_fallback)

    @classmethod
    def from_pickle(cls, path: str | Path, slash_fallback: bool = True) -> "Vocabulary":
        """A JASCO-style ``chord_to_index_mapping.pkl``, read by an unpickler that builds plain data
        only: a pickle naming any class or function (which unpickling would run) is refused."""
        path = Path(path)
        try:
            mapping = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
        except FileNotFoundError:
            raise VocabularyError(f"{path}: vocabulary file not found") from None
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise VocabularyError(f"{path}: not a pickled {{label: index}} dict: {exc}") from None
        if not isinstance(mapping, dict):
            raise VocabularyError(f"{path}: expected a pickled dict {{label: index}}, got {type(mapping).__name__}")
        return cls(mapping, name=str(path), slash_fallback=slash_fallback)

    @classmethod
    def load(cls, name_or_path: str, slash_fallback: bool = True) -> "Vocabulary":
        """``"jasco"``, a path to a JSON vocabulary, or a ``.pkl`` one (plain dict only)."""
        if name_or_path == JASCO_VOCABULARY:
            return cls.jasco(slash_fallback)
        if Path(name_or_path).suffix.lower() in (".pkl", ".pickle"):
            return cls.from_pickle(name_or_path, slash_fallback)
        return cls.from_json(name_or_path, slash_fallback)

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: str) -> bool:
        return label in self._index

    @property
    def labels(self) -> list[str]:
        """Labels in index order."""
        return list(self._labels)

    def mapping(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self._labels)}

    @functools.cached_property
    def digest(self) -> str:
        """Short hash of the table (part of the stage's params hash)."""
        blob = json.dumps(self.mapping(), separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def resolve(self, label: str) -> str:
        """The vocabulary label that ``label`` encodes to (``UNK`` if none); counts fallbacks."""
        return self._labels[self.encode(label)]

    def encode(self, label: str) -> int:
        """Index of ``label`` after normalisation; ``UNK`` (counted) if the table lacks it."""
        canonical = normalise_label(label)
        index = self._index.get(canonical)
        if index is not None:
            return index
        if self.slash_fallback:
            plain = root_position(canonical)
            if plain is not None and plain in self._index:
                self.bass_dropped[canonical] += 1
                return self._index[plain]
        self.unknown[canonical] += 1
        return self.unk_index

    def decode(self, index: int) -> str:
        if not 0 <= index < len(self._labels):
            raise IndexError(f"chord index {index} outside vocabulary {self.name} of size {len(self)}")
        return self._labels[index]

    def reset_counts(self) -> None:
        self.unknown.clear()
        self.bass_dropped.clear()

    # ------------------------------------------------------------------ output
    def to_json(self) -> str:
        return json.dumps(self.mapping(), indent=1) + "\n"

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.to_json())
        return path


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles dicts, strings and numbers (pickle builds those without naming any global)."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        raise pickle.UnpicklingError(f"refused: the file names {module}.{name}; only a plain dict is accepted")


def _check_mapping(mapping: Mapping[str, int], name: str) -> None:
    if not mapping:
        raise VocabularyError(f"{name}: empty vocabulary")
    bad = [(k, v) for k, v in mapping.items() if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise VocabularyError(f"{name}: entries must be label -> integer index, got {bad[:3]}")
    indices = sorted(mapping.values())
    if indices != list(range(len(mapping))):
        raise VocabularyError(f"{name}: indices must be 0..{len(mapping) - 1} without gaps or repeats")
    if mapping.get(CHORD_NO_CHORD) != NO_CHORD_INDEX:
        raise VocabularyError(f"{name}: {CHORD_NO_CHORD!r} must have index {NO_CHORD_INDEX}")
    if mapping.get(CHORD_UNKNOWN) != len(mapping) - 1:
        raise VocabularyError(f"{name}: {CHORD_UNKNOWN!r} must have the last index {len(mapping) - 1}")
    if name == JASCO_VOCABULARY and len(mapping) != JASCO_CHORD_VOCAB_SIZE:
        raise VocabularyError(f"{name}: expected {JASCO_CHORD_VOCAB_SIZE} labels, got {len(mapping)}")


def build_vocabulary(counts: Mapping[str, float] | Iterable[tuple[str, float]], min_count: float = 1,
                     max_size: int | None = None) -> Vocabulary:
    """A vocabulary from label frequencies: ``N`` first, then labels by decreasing count, ties by
    name, then ``UNK``. Labels are normalised first (counts of spellings of one chord add up).

    Args:
        counts: label -> frequency (e.g. frames covered), or (label, frequency) pairs.
        min_count: labels seen less often are left out (they will encode to ``UNK``).
        max_size: cap on the table size including ``N`` and ``UNK`` (None: no cap).
    """
    if max_size is not None and max_size < 2:
        raise VocabularyError("max_size must leave room for N and UNK (>= 2)")
    items = counts.items() if isinstance(counts, Mapping) else counts
    totals: collections.Counter[str] = collections.Counter()
    for label, count in items:
        totals[normalise_label(label)] += count
    chords = [(label, c) for label, c in totals.items()
              if label not in (CHORD_NO_CHORD, CHORD_UNKNOWN) and c >= min_count]
    chords.sort(key=lambda item: (-item[1], item[0]))
    if max_size is not None:
        chords = chords[: max_size - 2]
    labels = [CHORD_NO_CHORD, *(label for label, _ in chords), CHORD_UNKNOWN]
    return Vocabulary({label: i for i, label in enumerate(labels)}, name="built")
