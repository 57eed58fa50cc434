"""Read a generation report (``DIR/report.json``, format ``chordflow.generation/1``) for evaluation.

The report lists generated clips and what each was asked for (see :class:`ClipRequest`); file
paths in it are relative to the report's folder. A malformed report is a :class:`ReportError`
naming the file; a malformed clip entry is not fatal: it is returned in ``GenerationReport.problems``
so that the other clips are still scored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from model.sampling.generate import REPORT_FORMAT
from music.conditions import CONDITION_NAMES
from pipeline.constants import LATENT_FRAME_RATE

#: Group of a clip whose entry names none.
DEFAULT_GROUP = "all"


class ReportError(ValueError):
    """The report file is missing, unreadable, or not a generation report."""


@dataclasses.dataclass(frozen=True)
class ClipRequest:
    """One generated clip and the controls to score it against (paths resolved)."""

    id: str
    wav: Path
    duration_s: float
    group: str
    conditions: dict[str, bool]
    #: ``((label, start_s), ...)``: each chord lasts until the next start, the last one until duration_s.
    chords: tuple[tuple[str, float], ...] | None = None
    #: (T, 53) float32 .npy at ``melody_frame_rate``.
    melody: Path | None = None
    melody_frame_rate: float = LATENT_FRAME_RATE
    #: Reference drums audio (a drum track; its onsets are the reference).
    drums: Path | None = None
    description: str | None = None
    source_track: str | None = None


@dataclasses.dataclass(frozen=True)
class GenerationReport:
    path: Path
    sample_rate: int | None
    clips: tuple[ClipRequest, ...]
    #: ``(clip id or "#index", reason)`` for entries that could not be read.
    problems: tuple[tuple[str, str], ...] = ()


def read_report(path: str | Path) -> GenerationReport:
    """Parse and check ``path``; raises :class:`ReportError` if the file itself is unusable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read the generation report ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ReportError(f"{path}: not a generation report (format {found!r}, expected {REPORT_FORMAT!r})")
    entries = data.get("clips")
    if not isinstance(entries, list):
        raise ReportError(f"{path}: 'clips' must be a list")
    clips: list[ClipRequest] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else f"#{index}"
        try:
            clip = _clip(entry, path.parent)
            if clip.id in seen:
                raise ValueError("duplicate id")
        except (ValueError, TypeError, KeyError) as exc:
            problems.append((name, f"{path}: clip {name}: {exc}"))
            continue
        seen.add(clip.id)
        clips.append(clip)
    rate = data.get("sample_rate")
    return GenerationReport(path, int(rate) if isinstance(rate, (int, float)) else None, tuple(clips), tuple(problems))


def _clip(entry: Any, root: Path) -> ClipRequest:
    if not isinstance(entry, dict):
        raise ValueError(f"expected an object, got {type(entry).__name__}")
    clip_id, wav = entry["id"], entry["wav"]
    if not isinstance(clip_id, str) or not clip_id or not isinstance(wav, str):
        raise ValueError("'id' and 'wav' must be non-empty strings")
    duration = _number(entry["duration_s"], "duration_s")
    if duration <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration}")
    conditions = entry.get("conditions") or {}
    if not isinstance(conditions, dict):
        raise ValueError("'conditions' must be an object")
    group = entry.get("group") or DEFAULT_GROUP
    melody_rate = _number(entry.get("melody_frame_rate") or LATENT_FRAME_RATE, "melody_frame_rate")
    if melody_rate <= 0:
        raise ValueError(f"melody_frame_rate must be > 0, got {melody_rate}")
    return ClipRequest(
        id=clip_id, wav=root / wav, duration_s=duration, group=str(group),
        conditions={name: bool(conditions.get(name, False)) for name in CONDITION_NAMES},
        chords=_chords(entry.get("chords")), melody=_path(entry.get("melody"), root, "melody"),
        melody_frame_rate=melody_rate, drums=_path(entry.get("drums"), root, "drums"),
        description=entry.get("description"), source_track=entry.get("source_track"),
    )


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _path(value: Any, root: Path, what: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{what}' must be a path string or null, got {value!r}")
    return root / value


def _chords(value: Any) -> tuple[tuple[str, float], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError("'chords' must be a non-empty list of [label, start_s] pairs or null")
    changes = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise ValueError(f"chord {item!r}: expected [label, start_s]")
        start = _number(item[1], f"chord {item!r} start")
        if start < 0:
            raise ValueError(f"chord {item!r}: negative start")
        changes.append((item[0], start))
    return tuple(sorted(changes, key=lambda change: change[1]))
