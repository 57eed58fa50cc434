"""Adherence of generated audio to its controls, read against chance and the decode ceiling, by
every judge; and how real it sounds.

Inputs are two ``chordflow eval score`` outputs: the generated held-out clips (groups
``chords_given``, ``chords_dropped``, ``all_given``) and the ``ceiling`` run (the same held-out
real clips through the codec alone). Each control is scored by the stage that made its training
condition and, where one exists, by an independent judge (the row's ``judge``); each row is read
against that judge's own ceiling. The targets: conditioned >= 0.9 x ceiling, chords dropped <=
chance + 0.05, chords with all controls within 0.05 of chords + text; realism: each group's Fréchet
distance <= 3 x the real-vs-real distance on the same embedding: the held-out requests' own real clips
when the score measured them (``chordflow eval score --heldout-real``), else the even vs odd halves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONDITIONED_TARGET = 0.9   # conditioned >= 0.9 x decode ceiling
DROPPED_MARGIN = 0.05      # dropped <= chance + 0.05
ALL_CONTROLS_MARGIN = 0.05  # chords with all controls within 0.05 of chords + text
FRECHET_TARGET = 3.0       # Fréchet distance <= 3 x real vs real

#: (row name, metric, group with the control given, group with it withheld or None)
ROWS: tuple[tuple[str, str, str, str | None], ...] = (
    ("chords", "chord_accuracy", "chords_given", "chords_dropped"),
    ("chords", "chord_accuracy_cnn", "chords_given", "chords_dropped"),
    ("chords (all controls)", "chord_accuracy", "all_given", None),
    ("chords (all controls)", "chord_accuracy_cnn", "all_given", None),
    ("melody (exact semitone)", "melody_accuracy", "all_given", None),
    ("melody (exact semitone)", "melody_accuracy_crepe", "all_given", None),
    ("melody (pitch class)", "melody_pitch_class_accuracy", "all_given", None),
    ("melody (pitch class)", "melody_pitch_class_accuracy_crepe", "all_given", None),
    ("drums (onset F1)", "onset_f1", "all_given", None),
)
#: Chord rows with all controls are also read against chords + text.
ALL_CONTROLS_OF = "chords (all controls)"
CHORDS_TEXT_GROUP = "chords_given"


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
        row = {"control": name, "metric": metric, "judge": generated.get("judges", {}).get(metric, {}).get("name"),
               "given": given,
               "n": groups[given_group][metric].get("n"),
               "dropped": _mean(groups, dropped_group, metric),
               "chance": _mean(groups, given_group, f"{metric}_chance"),
               "ceiling": _mean(ceiling_groups, "ceiling", metric)}
        if row["ceiling"]:
            row["given_over_ceiling"] = given / row["ceiling"]
            row["meets_conditioned_target"] = row["given_over_ceiling"] >= CONDITIONED_TARGET
        if row["dropped"] is not None and row["chance"] is not None:
            row["meets_dropped_target"] = row["dropped"] <= row["chance"] + DROPPED_MARGIN
        chords_text = _mean(groups, CHORDS_TEXT_GROUP, metric) if name == ALL_CONTROLS_OF else None
        if chords_text is not None:
            row["chords_text"] = chords_text
            row["meets_all_controls_target"] = given >= chords_text - ALL_CONTROLS_MARGIN
        rows.append(row)
    return {"targets": {"conditioned_over_ceiling": CONDITIONED_TARGET, "dropped_margin_over_chance": DROPPED_MARGIN,
                        "all_controls_margin_to_chords_text": ALL_CONTROLS_MARGIN,
                        "frechet_over_real_vs_real": FRECHET_TARGET,
                        "frechet_yardstick": "heldout_real where measured, else real_vs_real"},
            "rows": rows, "realism": realism_table(generated, ceiling)}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _frechet_rows(section: dict[str, Any], name: str, ceiling_section: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each group's distance over both real scales; the target is read against the held-out real
    clips when they were measured (a set of the generated set's size, so the sample-size bias of the
    Fréchet distance is the same on both sides), else against the real-vs-real halves."""
    halves, heldout = _number(section.get("real_vs_real")), _number(section.get("heldout_real"))
    yardstick = heldout or halves
    if yardstick is None:
        return []
    entries = dict(section.get("groups", {}))
    if ceiling_section and isinstance(ceiling_section.get("distance"), (int, float)):
        entries["ceiling"] = ceiling_section["distance"]
    rows = []
    for group, distance in sorted(entries.items()):
        if isinstance(distance, (int, float)):
            rows.append({"embedding": name, "group": group, "distance": distance,
                         "real_vs_real": halves, "over_real_vs_real": distance / halves if halves else None,
                         "heldout_real": heldout, "over_heldout_real": distance / heldout if heldout else None,
                         "yardstick": "heldout_real" if heldout else "real_vs_real",
                         "meets_target": distance / yardstick <= FRECHET_TARGET})
    return rows


def realism_table(generated: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """Fréchet distances per group (and of the ceiling) over real-vs-real, on each embedding; the tonal
    energy fraction per group, of the ceiling and of the real clips."""
    realism, ceiling_realism = generated.get("realism", {}), ceiling.get("realism", {})
    frechet = _frechet_rows(realism.get("frechet", {}), realism.get("frechet", {}).get("embedding", "musicnn"),
                            ceiling_realism.get("frechet"))
    frechet += _frechet_rows(generated.get("frechet", {}), generated.get("frechet", {}).get("embedding", "handmade"),
                             ceiling.get("frechet"))
    clarity = {group: stats["tonal_energy_fraction"]["mean"] for group, stats in generated.get("groups", {}).items()
               if "tonal_energy_fraction" in stats}
    ceiling_clarity = _mean(ceiling.get("groups", {}), "ceiling", "tonal_energy_fraction")
    if ceiling_clarity is not None:
        clarity["ceiling"] = ceiling_clarity
    real = realism.get("tonal_energy_fraction", {}).get("real", {}).get("mean")
    return {"frechet": frechet,
            "tonal_energy_fraction": {"groups": clarity, "real": real,
                                      "over_real": {g: v / real for g, v in clarity.items()} if real else None}}


def markdown(table: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "—" if value is None else (("yes" if value else "no") if isinstance(value, bool) else f"{value:.3f}")

    lines = ["| control | judge | given | dropped | chance | decode ceiling | given / ceiling | n |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table["rows"]:
        lines.append(f"| {row['control']} | {row.get('judge') or '—'} | {cell(row['given'])} | {cell(row['dropped'])} | "
                     f"{cell(row['chance'])} | {cell(row['ceiling'])} | {cell(row.get('given_over_ceiling'))} | {row['n']} |")
    realism = table.get("realism", {})
    if realism.get("frechet"):
        def number(value: float | None, style: str) -> str:
            return "—" if value is None else format(value, style)

        lines += ["", "| embedding | group | Fréchet distance | real vs real halves | ratio | held-out real clips | ratio "
                      "| target met |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['embedding']} | {r['group']} | {r['distance']:.4g} | {number(r['real_vs_real'], '.4g')} | "
                  f"{number(r['over_real_vs_real'], '.2f')} | {number(r['heldout_real'], '.4g')} | "
                  f"{number(r['over_heldout_real'], '.2f')} | {cell(r['meets_target'])} |" for r in realism["frechet"]]
    clarity = realism.get("tonal_energy_fraction", {})
    if clarity.get("groups"):
        lines += ["", "tonal energy fraction: " + ", ".join(f"{g} {v:.3f}" for g, v in sorted(clarity["groups"].items()))
                  + (f"; real clips {clarity['real']:.3f}" if clarity.get("real") is not None else "")]
    return "\n".join(lines)


def write_adherence(generated_path: str | Path, ceiling_path: str | Path, out: str | Path) -> dict[str, Any]:
    from pipeline.metrics import write_metrics

    table = adherence_table(json.loads(Path(generated_path).read_text()), json.loads(Path(ceiling_path).read_text()))
    write_metrics(table, out)
    return table
