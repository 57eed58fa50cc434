"""One request from the page's fields, checked, and the prompts document that reproduces it.

The document is what ``chordflow generate`` reads as both ``--params`` (its ``generate`` and stage
sections) and ``--prompts`` (its ``prompts`` list, one row per variation, each with its own seed):

    chordflow generate --checkpoint CKPT --params variation_0.json --prompts variation_0.json --out again
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chordflow.studio.config import MIN_DURATION_SECONDS, VARIATIONS, StudioError
from model.flow.solver import ADAPTIVE_METHODS, FIXED_STEP_METHODS
from music.bars import BarsError, chords_from_pairs, chords_timeline

DOCUMENT_FORMAT = "chordflow.studio/1"
SOLVERS: tuple[str, ...] = (*FIXED_STEP_METHODS, *ADAPTIVE_METHODS)
MAX_STEPS = 1000
MAX_GUIDANCE = 20.0
DRUMS_SOURCES = ("drum loop", "full mix")


@dataclass(frozen=True)
class StudioRequest:
    prompt: str
    model: str
    chords: list[tuple[str, float]] | None
    duration: float
    seed: int
    cfg_coef_all: float
    cfg_coef_txt: float
    solver: str
    steps: int
    tolerance: float
    #: Uploaded reference files (already checked) and whether the drums file is a full mix.
    drums: Path | None = None
    drums_is_mix: bool = False
    melody: Path | None = None

    def settings(self) -> dict[str, Any]:
        """The ``generate`` overrides this request asks for (GenerateConfig fields)."""
        return {"cfg_coef_all": self.cfg_coef_all, "cfg_coef_txt": self.cfg_coef_txt, "solver": self.solver,
                "steps": self.steps, "atol": self.tolerance, "rtol": self.tolerance, "seconds": self.duration}


def parse_chords(text: str | None, bpm: float | None, meter: str | None) -> list[tuple[str, float]] | None:
    """``(C, 0.0), (D, 2.0)`` (JASCO's form) or bars / beats (``C | G | Am F`` with a bpm); empty: none."""
    if text is None or not text.strip():
        return None
    try:
        if text.strip()[0] in "([":
            return chords_from_pairs(text)
        if bpm is None or (isinstance(bpm, float) and math.isnan(bpm)):
            raise StudioError("chords by bars or beats need a tempo: set bpm (or write (label, start) pairs)")
        return chords_timeline(text, bpm=float(bpm), meter=meter or "4/4")
    except BarsError as exc:
        raise StudioError(f"chords: {exc}") from None


def _number(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"{name}: {value!r} is not a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise StudioError(f"{name} {number:g} is out of range {low:g}..{high:g}")
    return number


def build_request(*, prompt: str | None, model: str | None, chords: str | None, bpm: float | None,
                  meter: str | None, duration: Any, seed: Any, cfg_all: Any, cfg_text: Any, solver: str | None,
                  steps: Any, tolerance: Any, max_duration: float, drums: Path | None = None,
                  drums_source: str | None = None, melody: Path | None = None) -> StudioRequest:
    """The page's fields -> a checked request (every problem is a :class:`StudioError` naming the field)."""
    if solver not in SOLVERS:
        raise StudioError(f"solver {solver!r}: one of {', '.join(SOLVERS)}")
    steps_value = _number(steps, "steps", 1, MAX_STEPS)
    seed_value = _number(seed, "seed", 0, 2**31 - 1)
    if steps_value != int(steps_value) or seed_value != int(seed_value):
        raise StudioError("steps and seed are whole numbers")
    if drums_source is not None and drums_source not in DRUMS_SOURCES:
        raise StudioError(f"drums source {drums_source!r}: one of {', '.join(DRUMS_SOURCES)}")
    return StudioRequest(
        prompt=(prompt or "").strip(), model=model or "", chords=parse_chords(chords, bpm, meter),
        duration=_number(duration, "duration (s)", MIN_DURATION_SECONDS, max_duration), seed=int(seed_value),
        cfg_coef_all=_number(cfg_all, "guidance all", -MAX_GUIDANCE, MAX_GUIDANCE),
        cfg_coef_txt=_number(cfg_text, "guidance text", -MAX_GUIDANCE, MAX_GUIDANCE), solver=solver,
        steps=int(steps_value), tolerance=_number(tolerance, "ODE tolerance", 1e-9, 0.1),
        drums=drums, drums_is_mix=drums_source == "full mix", melody=melody)


def prompt_rows(request: StudioRequest, references: dict[str, str]) -> list[dict[str, Any]]:
    """One prompts row per variation, each alone with its own seed (so each is reproducible alone).

    references: ``{"drums": name, "melody": name}`` of the saved reference files, relative to the
    document's folder."""
    rows = []
    for number in range(VARIATIONS):
        row: dict[str, Any] = {"id": f"variation_{number}", "description": request.prompt or None,
                               "duration": request.duration, "seed": request.seed + number}
        if request.chords is not None:
            row["chords"] = [[label, start] for label, start in request.chords]
        if "drums" in references:
            row["drums"] = references["drums"]
            row["drums_is_stem"] = not request.drums_is_mix
        if "melody" in references:
            row["melody"] = references["melody"]
        rows.append(row)
    return rows


def prompts_document(request: StudioRequest, checkpoint: Path, rows: list[dict[str, Any]],
                     stage_sections: dict[str, Any], name: str) -> dict[str, Any]:
    """What ``chordflow generate`` re-runs (module doc), saved as ``name``.json."""
    command = (f"chordflow generate --checkpoint {checkpoint} --params {name}.json --prompts {name}.json "
               f"--out {name}_again")
    return {"format": DOCUMENT_FORMAT, "checkpoint": str(checkpoint), "model": request.model, "command": command,
            "generate": request.settings(), **stage_sections, "prompts": rows}


def stage_sections(references: Any) -> dict[str, Any]:
    """The drums / melody / chords stage settings that turn the reference files into controls."""
    return {name: asdict(getattr(references, name)) for name in ("drums", "melody", "chords")}
