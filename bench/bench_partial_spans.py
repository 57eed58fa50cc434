"""Chords over part of the timeline: chord accuracy by half, chords given on the first half only.

    python bench/bench_partial_spans.py --checkpoint RUN/checkpoint.pt
        [--prompts data/heldout/prompts.jsonl] [--group chords_given] [--limit 12] [--params params.yaml]
        [--json OUT]

Each held-out prompt is generated three times, with the same noise: chords on the whole clip, chords
on the first half only (``spans``), and chords dropped. The chords stage (Chordino, not the model)
reads every clip back; chord accuracy (mir_eval majmin) is computed on each half against the
prompt's progression. A model trained with span dropout (``model.dropout.span``) should keep the
first half as good as whole-clip conditioning and fall to the dropped level on the second half.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import report_figures  # noqa: E402

import numpy as np  # noqa: E402

from bench.bench_longform import window  # noqa: E402

MODES = ("whole", "first_half", "dropped")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--prompts", default="data/heldout/prompts.jsonl")
    parser.add_argument("--group", default="chords_given")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from model.evaluation.score import chord_accuracy, requested_segments
    from model.sampling.generate import load_generator
    from pipeline.config import read_params_if_present
    from pipeline.stage import create_stage

    params = read_params_if_present(args.params)
    generator = load_generator(args.checkpoint, params.get("generate"))
    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("group") == args.group and r.get("chords")][: args.limit]
    chords_stage = create_stage("chords", params.get("chords"))
    seconds = generator.params.seconds
    half = seconds / 2
    descriptions = [r.get("description") for r in rows]
    progressions = [[tuple(c) for c in r["chords"]] for r in rows]
    requests = {
        "whole": {"chords": progressions},
        "first_half": {"chords": progressions, "spans": [{"chords": [[0.0, half]]}] * len(rows)},
        "dropped": {"chords": None},
    }
    scores: dict[str, dict[str, list[float]]] = {m: {"first_half": [], "second_half": []} for m in MODES}
    for mode in MODES:
        audio = generator.generate_music(descriptions, **requests[mode])   # same seed: the same noise
        for wav, asked in zip(audio, progressions):
            found = chords_stage.segments(wav[None], generator.sample_rate)
            wanted = requested_segments(asked, seconds)
            for part, (start, stop) in {"first_half": (0.0, half), "second_half": (half, seconds)}.items():
                request = [(label, s) for label, s, _ in window(wanted, start, stop)]
                scores[mode][part].append(chord_accuracy(request, stop - start, window(found, start, stop)))
    means = {mode: {part: round(float(np.nanmean(v)), 4) for part, v in parts.items()} for mode, parts in scores.items()}
    figures = {
        "checkpoint": args.checkpoint, "clips": len(rows), "seconds": seconds, "accuracy": means,
        "first_half_given_minus_whole": round(means["first_half"]["first_half"] - means["whole"]["first_half"], 4),
        "second_half_partial_minus_dropped": round(means["first_half"]["second_half"] - means["dropped"]["second_half"], 4),
        "second_half_whole_minus_dropped": round(means["whole"]["second_half"] - means["dropped"]["second_half"], 4),
    }
    return report_figures(figures, args.json)


if __name__ == "__main__":
    main()
