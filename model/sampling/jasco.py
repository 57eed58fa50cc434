"""JASCO's guidance semantics for the ``jasco`` network, with AudioCraft's quirks behind one switch.

Multi-source guidance has three terms (AudioCraft's ``AllCFGTerm``, ``TextCFGTerm``,
``NullCFGTerm``): every condition; text only (the temporal conditions dropped); nothing. Their
weights are w_all, w_txt and 1 - w_all - w_txt.

``audiocraft_quirks`` on reproduces AudioCraft's numbers (SPEC.md §3, §5 of the parity fixture):

- (a) when any row of the batch has drums, a row whose drums are dropped or absent gets the
  drum condition of *silence* (AudioCraft zero-pads the null waveform to the batch's length and
  encodes it), not the null projection bias;
- (b) in a row without chords, the melody is not dropped in the text-only and null terms
  (AudioCraft's symbolic dropout returns early when there are no chords);
- terms whose |weight| < 1e-6 are removed as AudioCraft's loop removes them (editing the list it
  walks, so the term after a removed one is never checked; the numbers are the same, the batch is not).

Off, every dropped condition takes its null form (chords: the null chord, drums and melody: the
projection bias, text: zeros) — what training's dropout fed the model — and only zero-weight terms
are skipped.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from model.network.conditioners import Conditions
from music.conditions import CONDITION_NAMES, TEMPORAL_CONDITIONS

#: AudioCraft's threshold under which a guidance term is not computed.
MIN_TERM_WEIGHT = 1e-6


def guidance_terms(cfg_coef_all: float, cfg_coef_txt: float, quirks: bool) -> list[tuple[str, float]]:
    """The (term, weight) pairs computed, in AudioCraft's batch order [all, text, none]."""
    terms = [("all", cfg_coef_all), ("text", cfg_coef_txt)]
    terms.append(("none", 1.0 - sum(w for _, w in terms)))
    if not quirks:
        return [(name, w) for name, w in terms if w != 0.0]
    kept = list(terms)
    for term in kept:  # AudioCraft: `for ct in cfg_terms: if small: cfg_terms.remove(ct)` (skips the next one)
        if abs(term[1]) < MIN_TERM_WEIGHT:
            kept.remove(term)
    return kept


def _column(name: str) -> int:
    return CONDITION_NAMES.index(name)


def term_conditions(cond: Conditions, term: str, quirks: bool, silence_drums: torch.Tensor | None) -> Conditions:
    """The conditions of one guidance term for the batch ``cond`` (rows as given).

    ``silence_drums``: (T, drum_dim) drum condition of a silent stem, used by quirk (a)."""
    keep = cond.keep.clone()
    given = cond.keep
    if term in ("text", "none"):
        for name in TEMPORAL_CONDITIONS:
            keep[:, _column(name)] = False
        if term == "none":
            keep[:, _column("text")] = False
        if quirks:  # (b): no chords in a row -> its melody survives the symbolic dropout
            no_chords = ~given[:, _column("chords")]
            keep[:, _column("melody")] = given[:, _column("melody")] & no_chords
    out = cond.with_keep(keep)
    if quirks and silence_drums is not None and bool(given[:, _column("drums")].any()):
        silent = ~keep[:, _column("drums")]  # (a): dropped or absent drums are encoded silence
        if bool(silent.any()):
            drums = out.drums.clone()
            drums[silent] = silence_drums.to(drums.device, drums.dtype)[: drums.shape[1]]
            keep[silent, _column("drums")] = True
            out = replace(out, drums=drums, keep=keep)
    return out


def guidance_batch(cond: Conditions, terms: list[tuple[str, float]], quirks: bool,
                   silence_drums: torch.Tensor | None) -> Conditions:
    """All terms' conditions stacked along the batch, AudioCraft's order (term-major)."""
    return Conditions.cat([term_conditions(cond, name, quirks, silence_drums) for name, _ in terms])
