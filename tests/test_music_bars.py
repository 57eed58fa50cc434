"""Chords by bars and beats (music/bars.py) and through the prompts JSONL."""

from __future__ import annotations

import json

import pytest

from music.bars import BarsError, chords_timeline


@pytest.mark.parametrize("text, kwargs, expected", [
    ("C | G | Am F | F G7", {"bpm": 120}, [("C", 0.0), ("G", 2.0), ("Am", 4.0), ("F", 5.0), ("G7", 7.0)]),
    ("C | % | G7:3 C:1", {"bpm": 60}, [("C", 0.0), ("G7", 8.0), ("C", 11.0)]),          # % repeats, held C merged
    ("C:2 G:2 Am:4", {"bpm": 120}, [("C", 0.0), ("G", 1.0), ("Am", 2.0)]),                # beats form
    ("D | G | A7", {"bpm": 90, "meter": "3/4"}, [("D", 0.0), ("G", 2.0), ("A7", 4.0)]),   # 3 quarter beats at 90
    ("D A | Bm", {"bpm": 180, "meter": "6/8"}, [("D", 0.0), ("A", 1.0), ("Bm", 2.0)]),   # 6 eighths at 180 = 2 s
    ("G | C G | D", {"bpm": 120, "pickup": 2}, [("G", 0.0), ("C", 1.0), ("G", 2.0), ("D", 3.0)]),  # 2-beat anacrusis
    ("C | N | F", {"bpm": 120, "offset": 0.5}, [("N", 0.0), ("C", 0.5), ("N", 2.5), ("F", 4.5)]),
])
def test_bars_and_beats_become_a_timeline(text, kwargs, expected):
    timeline = chords_timeline(text, **kwargs)
    assert [label for label, _ in timeline] == [label for label, _ in expected]
    assert [start for _, start in timeline] == pytest.approx([start for _, start in expected])


@pytest.mark.parametrize("text, kwargs, message", [
    ("C | Xq7 | G", {}, r"token 'Xq7' \(bar 2, character 5\): not a chord label"),
    ("C G Am | F", {}, r"bar 1: 3 chords do not divide its 4 beats"),
    ("C:2 G:1 | F", {}, r"bar 1: the beats 2 \+ 1 do not fill its 4 beats"),
    ("C:2 G | F", {}, r"bar 1: give every chord of the bar its beats, or none"),
    ("C | | G", {}, r"bar 2: empty"),
    ("% | C", {}, r"token '%' \(bar 1, character 1\): '%' repeats the previous bar, and there is none"),
    ("C:2 G", {}, r"token 'G' \(character 5\): in the beats form"),
    ("C:x G:2", {}, r"beats 'x' is not a number"),
    ("C | G", {"bpm": 5}, r"bpm 5 is out of range 20..400"),
    ("C | G", {"bpm": 500}, r"bpm 500 is out of range"),
    ("C | G", {"meter": "4/5"}, r"meter '4/5'"),
    ("C | G", {"meter": "waltz"}, r"meter 'waltz': expected beats/unit"),
    ("C | G", {"pickup": 4}, r"pickup 4 beats: must be 0 <= pickup < 4"),
    ("  ", {}, r"empty chord text"),
])
def test_malformed_chord_text_names_the_token_and_where(text, kwargs, message):
    with pytest.raises(BarsError, match=message):
        chords_timeline(text, **{"bpm": 120, **kwargs})


def test_prompts_take_chords_by_bars_and_reject_bad_lines_by_name(tmp_path):
    from model.sampling.prompts import read_prompts

    lines = [
        {"id": "ok", "description": "waltz", "chords": "C | G7 | C", "bpm": 90, "meter": "3/4"},
        {"id": "beats", "chords": "Am:2 F:2", "bpm": 120},
        {"id": "no_bpm", "chords": "C | G"},
        {"id": "bad_chord", "chords": "C | Hmaj | G", "bpm": 100},
        {"id": "bpm_without_text", "chords": [["C", 0.0]], "bpm": 100},
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    prompts, rejects = read_prompts(path, 10.0)
    assert {p.id: p.chords for p in prompts} == {"ok": [["C", 0.0], ["G7", 2.0], ["C", 4.0]],
                                                  "beats": [["Am", 0.0], ["F", 1.0]]}
    reasons = {r["where"].rsplit(":", 1)[1]: r["reason"] for r in rejects}
    assert "need a 'bpm'" in reasons["3"]
    assert "token 'Hmaj' (bar 2, character 5)" in reasons["4"]
    assert "apply to chords written as a bars string" in reasons["5"]
