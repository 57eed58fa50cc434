"""The prompts JSONL of ``chordflow generate``: one line per clip, read into :class:`Prompt` objects.

A line: ``{"id", "description", "duration", "seed", "group"}`` plus any controls: ``chords`` (a
``[[label, start], ...]`` timeline, or a bars/beats string with ``bpm``, ``meter``, ``pickup``,
``offset``: music/bars.py), ``drums`` and ``melody`` files (``drums_is_stem``: the drums file is a drum part, used as is), ``controls_from`` a song with ``use``,
and an ``audio`` clip to edit with ``continue_after`` or ``regenerate``. A bad line becomes a
reject naming the line and the reason; the rest of the file goes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from music.bars import BarsError, chords_timeline
from music.conditions import TEMPORAL_CONDITIONS


class PromptError(ValueError):
    """A prompt line that cannot be turned into controls."""


@dataclass
class Prompt:
    id: str
    description: str | None
    duration: float
    group: str | None = None
    chords: list | None = None
    score_chords: list | None = None
    drums_path: Path | None = None
    #: The drums file is a drum part already (a loop): used as is, not through the drums separator.
    drums_is_stem: bool = False
    melody_path: Path | None = None
    seed: int | None = None
    #: A song whose chords / drums / melody (the ``use`` subset) the stages extract as controls.
    controls_from: Path | None = None
    use: tuple[str, ...] = TEMPORAL_CONDITIONS
    #: A user's clip to edit: keep its first ``continue_after`` s, or regenerate its ``regenerate`` spans.
    audio_path: Path | None = None
    continue_after: float | None = None
    regenerate: list | None = None
    #: Where each temporal control applies: {"chords": [[start, end], ...]} (None: whole clip).
    spans: dict | None = None
    controls: dict[str, Any] = field(default_factory=dict)


#: Prompt keys of chords written by bars or beats (music/bars.py).
BAR_KEYS = ("bpm", "meter", "pickup", "offset")


def prompt_chords(row: Mapping[str, Any]) -> list | None:
    """A prompt's chords as a (label, start) timeline: a list as given, or a bars/beats string
    (``"C | G | Am F"`` with ``bpm``, ``meter``, ``pickup``, ``offset``) converted once here."""
    chords = row.get("chords")
    if not isinstance(chords, str):
        if any(key in row for key in BAR_KEYS):
            raise PromptError(f"{', '.join(k for k in BAR_KEYS if k in row)} apply to chords written as a bars string")
        return chords
    if "bpm" not in row:
        raise PromptError("chords written by bars or beats need a 'bpm'")
    try:
        return [list(item) for item in chords_timeline(chords, bpm=row["bpm"], meter=row.get("meter", "4/4"),
                                                       pickup=row.get("pickup", 0.0), offset=row.get("offset", 0.0))]
    except BarsError as exc:
        raise PromptError(f"chords {chords!r}: {exc}") from None


#: Prompt keys that edit a user's clip (model/sampling/editing.py).
EDIT_KEYS = ("audio", "continue_after", "regenerate")


def _edit(row: Mapping[str, Any]) -> dict[str, Any]:
    """``continue_after`` / ``regenerate`` of a prompt (checked against the duration when generating)."""
    given = [key for key in ("continue_after", "regenerate") if row.get(key) is not None]
    if ("audio" in row) != bool(given) or len(given) > 1:
        raise PromptError("editing a clip: give 'audio' with exactly one of 'continue_after', 'regenerate'")
    if "regenerate" in given:
        spans = row["regenerate"]
        if not isinstance(spans, list) or not spans or not all(isinstance(s, list) and len(s) == 2 for s in spans):
            raise PromptError(f"regenerate {spans!r}: a list of [start, end] spans in seconds")
        return {"regenerate": [[float(a), float(b)] for a, b in spans]}
    return {"continue_after": float(row["continue_after"])} if given else {}


def _spans(row: Mapping[str, Any]) -> dict | None:
    """``{"chords": [[0, 8]], "drums": [[30, 60]]}``: where each temporal control applies."""
    spans = row.get("spans")
    if spans is None:
        return None
    if not isinstance(spans, dict) or not spans:
        raise PromptError(f"spans {spans!r}: an object {{control: [[start, end], ...]}}")
    for name, ranges in spans.items():
        if name not in TEMPORAL_CONDITIONS:
            raise PromptError(f"spans: {name!r} is not one of {list(TEMPORAL_CONDITIONS)}")
        if not isinstance(ranges, list) or not ranges or not all(
                isinstance(r, list) and len(r) == 2 and 0 <= float(r[0]) < float(r[1]) for r in ranges):
            raise PromptError(f"spans.{name} {ranges!r}: a list of [start, end] with 0 <= start < end")
    return {name: [[float(a), float(b)] for a, b in ranges] for name, ranges in spans.items()}


def _flag(row: Mapping[str, Any], key: str) -> bool:
    value = row.get(key, False)
    if not isinstance(value, bool):
        raise PromptError(f"{key} {value!r}: true or false")
    return value


def _use(row: Mapping[str, Any]) -> tuple[str, ...]:
    """Which controls ``controls_from`` provides (default all); each may come from one place only."""
    if "use" in row and "controls_from" not in row:
        raise PromptError("'use' applies to 'controls_from'")
    use = row.get("use", list(TEMPORAL_CONDITIONS))
    if isinstance(use, str) or not isinstance(use, list) or not use or set(use) - set(TEMPORAL_CONDITIONS):
        raise PromptError(f"use {use!r}: a non-empty list of {list(TEMPORAL_CONDITIONS)}")
    if "controls_from" in row:
        twice = [name for name in use if row.get(name) is not None]
        if twice:
            raise PromptError(f"{twice} given both directly and through controls_from; drop one of them")
    return tuple(name for name in TEMPORAL_CONDITIONS if name in use)


def _entries(path: Path) -> list[tuple[int, str, str | Any]]:
    """(number, where, line or row) of a JSONL file, or of a ``.json`` file holding an object whose
    ``prompts`` is a list of rows (the studio's downloads: settings and prompts in one file)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        return [(n, f"{path}:{n}", line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("prompts"), list):
        raise PromptError(f"{path}: a .json prompts file holds an object with a 'prompts' list")
    return [(n, f"{path}:prompts[{n - 1}]", row) for n, row in enumerate(document["prompts"], start=1)]


def read_prompts(path: str | Path, default_duration: float) -> tuple[list[Prompt], list[dict[str, str]]]:
    """Parse the JSONL (or ``.json`` with a ``prompts`` list); returns (prompts, rejects) where a
    reject names the line and the reason."""
    path = Path(path)
    base = path.parent
    prompts, rejects, seen = [], [], set()
    for number, where, line in _entries(path):
        try:
            row = json.loads(line) if isinstance(line, str) else line
            if not isinstance(row, dict):
                raise PromptError("not a JSON object")
            unknown = set(row) - {"id", "description", "chords", "score_chords", "drums", "melody", "duration",
                                  "group", "seed", "controls_from", "use", "spans", "drums_is_stem", *BAR_KEYS,
                                  *EDIT_KEYS}
            if unknown:
                raise PromptError(f"unknown key(s) {sorted(unknown)}")
            pid = str(row.get("id") or f"prompt_{number:04d}")
            if not re.fullmatch(r"[\w.-]+", pid) or pid in seen:
                raise PromptError(f"id {pid!r} is not a unique file-safe name")
            seed = row.get("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
                raise PromptError(f"seed {seed!r} is not a non-negative integer")
            duration = float(row.get("duration") or default_duration)
            if not 0 < duration <= 3600:
                raise PromptError(f"duration {duration} s is out of range")
            resolve = lambda key: (base / row[key]) if row.get(key) else None
            prompt = Prompt(id=pid, description=row.get("description") or None, duration=duration,
                            group=row.get("group"), chords=prompt_chords(row), score_chords=row.get("score_chords"),
                            drums_path=resolve("drums"), drums_is_stem=_flag(row, "drums_is_stem"),
                            melody_path=resolve("melody"), seed=seed,
                            controls_from=resolve("controls_from"), use=_use(row), audio_path=resolve("audio"),
                            spans=_spans(row), **_edit(row))
            for p in (prompt.drums_path, prompt.melody_path, prompt.controls_from, prompt.audio_path):
                if p is not None and not p.is_file():
                    raise PromptError(f"file {p} not found")
        except (ValueError, TypeError) as exc:
            rejects.append({"where": where, "reason": str(exc)})
            continue
        seen.add(pid)
        prompts.append(prompt)
    return prompts, rejects
