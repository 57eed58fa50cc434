"""Adherence of generated audio to its controls, read against chance and the decode ceiling.

Inputs are two ``chordflow eval score`` outputs: the generated held-out clips (groups
``chords_given``, ``chords_dropped``, ``all_given``) and the ``ceiling`` run (the same held-out
real clips through the codec alone). The targets are those of the model issue: conditioned chord
accuracy >= 0.9 x ceiling, chords dropped <= chance + 0.05.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONDITIONED_TARGET = 0.9   # conditioned >= 0.9 x decode ceiling
DROPPED_MARGIN = 0.05      # dropped <= chance + 0.05

#: (row name, metric, group with the control given, group with it withheld or None)
ROWS: tuple[tuple[str, str, str, str | None], ...] = (
    ("chords", "chord_accuracy", "chords_given", "chords_dropped"),
    ("chords (all controls)", "chord_accuracy", "all_given", None),
    ("melody (exact semitone)", "melody_accuracy", "all_given", None),
    ("melody (pitch class)", "melody_pitch_class_accuracy", "all_given", None),
    ("drums (onset F1)", "onset_f1", "all_given", None),
)


def _mean(groups: dict[str, Any], group: str | None, metric: str) -> float | None:
    if group is None:
        return None
    value = groups.get(group, {}).get(metric, {})
    return value.get("mean") if isinstance(value, dict) else None


def adherence_table(generated: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """One row per control: given, dropped, chance, ceiling, given / ceiling, and the targets' verdicts."""
    groups, ceiling_groups = generated.get("groups", {}), ceiling.get("groups", {})
    rows = []
    for name, metric, given_group, dropped_group in ROWS:
        given = _mean(groups, given_group, metric)
        if given is None:
            continue
        row = {"control": name, "metric": metric, "given": given,
               "n": groups[given_group][metric].get("n"),
               "dropped": _mean(groups, dropped_group, metric),
               "chance": _mean(groups, given_group, f"{metric}_chance"),
               "ceiling": _mean(ceiling_groups, "ceiling", metric)}
        if row["ceiling"]:
            row["given_over_ceiling"] = given / row["ceiling"]
            row["meets_conditioned_target"] = row["given_over_ceiling"] >= CONDITIONED_TARGET
        if row["dropped"] is not None and row["chance"] is not None:
            row["meets_dropped_target"] = row["dropped"] <= row["chance"] + DROPPED_MARGIN
        rows.append(row)
    return {"targets": {"conditioned_over_ceiling": CONDITIONED_TARGET, "dropped_margin_over_chance": DROPPED_MARGIN},
            "rows": rows}


def markdown(table: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "—" if value is None else (("yes" if value else "no") if isinstance(value, bool) else f"{value:.3f}")

    lines = ["| control | given | dropped | chance | decode ceiling | given / ceiling | n |", "|---|---|---|---|---|---|---|"]
    for row in table["rows"]:
        lines.append(f"| {row['control']} | {cell(row['given'])} | {cell(row['dropped'])} | {cell(row['chance'])} | "
                     f"{cell(row['ceiling'])} | {cell(row.get('given_over_ceiling'))} | {row['n']} |")
    return "\n".join(lines)


def write_adherence(generated_path: str | Path, ceiling_path: str | Path, out: str | Path) -> dict[str, Any]:
    from pipeline.metrics import write_metrics

    table = adherence_table(json.loads(Path(generated_path).read_text()), json.loads(Path(ceiling_path).read_text()))
    write_metrics(table, out)
    return table
