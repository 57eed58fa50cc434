"""Which generation settings keep the harmony when every control is given? Tuned with the
independent judges on a split the final report does not use.

    python bench/bench_judged_controls.py --checkpoint models/demo/checkpoint.pt \
        --prompts bench/results/tuning/prompts.jsonl [--variant NAME '{"cfg_coef_all": 2.0}' ...] \
        [--groups chords_given all_given chords_dropped] [--seeds 0 1] [--params params.yaml] [--json OUT]
        [--judges chords clarity embedding --reference-manifest manifests/demo.parquet
         --heldout-real bench/results/tuning/ceiling/report.json]

``--prompts``: held-out prompts of the tuning split (``chordflow heldout --splits valid``; the dvc
pipeline's report uses ``test``). Each variant (a name and GenerateConfig overrides, on top of the
checkpoint's recommended settings) generates the chosen groups once per seed through the product's
``generate_batch_file``; the clips are scored by ``chordflow eval``'s own scorer with the judges on.
Reported per variant and group: chord accuracy by the independent CNN judge and by Chordino, the CNN
judge's no-chord share, the tonal energy fraction, melody accuracy by CREPE, seconds; with the
``embedding`` judge and ``--reference-manifest``, each group's musicnn Fréchet distance to those real
clips (``musicnn_frechet``: the mean over the seeds' reports) and the real-vs-real figure; with
``--heldout-real`` (the tuning split's ceiling report) also the same-size yardstick: the requests' own
real clips against the reference without them (``musicnn_heldout_real``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import report_figures  # noqa: E402
from model.evaluation.embedding import HeldoutReal  # noqa: E402

COLUMNS = ("chord_accuracy_cnn", "chord_accuracy", "no_chord_fraction_cnn", "tonal_energy_fraction",
           "melody_accuracy_crepe", "melody_accuracy", "onset_f1")
DEFAULT_VARIANTS = {"recommended": {}}


def prompts_for(source: Path, groups: list[str], seed: int, out: Path) -> Path:
    """The tuning prompts of ``groups``, each with ``seed`` (and its id suffixed with it)."""
    lines = []
    for line in source.read_text().splitlines():
        prompt = json.loads(line)
        if prompt.get("group") in groups:
            lines.append(json.dumps({**prompt, "id": f"{prompt['id']}_s{seed}", "seed": seed}))
    out.write_text("\n".join(lines) + "\n")
    return out


def run_variant(checkpoint: str, prompts: Path, overrides: dict, groups: list[str], seeds: list[int],
                params: dict, work: Path, reference_manifest: str | None = None,
                reference_memo: dict | None = None, heldout: HeldoutReal | None = None) -> dict:
    from model.evaluation.score import evaluate_report
    from model.sampling.generate import ReferenceConfigs, generate_batch_file, load_generator

    generator = load_generator(checkpoint, params.get("generate"), overrides)
    references = ReferenceConfigs.from_params(params)
    started = time.perf_counter()
    clips, reports = [], []
    for seed in seeds:
        folder = work / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        # Relative control paths in the prompts resolve against the prompts file's folder.
        seeded = prompts_for(prompts, groups, seed, prompts.parent / f".tuning_seed{seed}.jsonl")
        report = generate_batch_file(generator, seeded, folder, references, progress=False)
        clips += report["clips"]
        reports.append(folder / "report.json")
    generate_s = time.perf_counter() - started
    by_group: dict[str, dict[str, list[float]]] = {}
    real_vs_real = heldout_real = None
    for report in reports:
        metrics, rows = evaluate_report(report, params, reference_manifest=reference_manifest, progress=False,
                                        reference_memo=reference_memo, heldout=heldout)
        frechet = metrics.get("realism", {}).get("frechet", {})
        real_vs_real = frechet.get("real_vs_real", real_vs_real)
        heldout_real = frechet.get("heldout_real", heldout_real)
        for group, distance in frechet.get("groups", {}).items():
            if isinstance(distance, float):
                by_group.setdefault(group, {}).setdefault("musicnn_frechet", []).append(distance)
        for row in rows:
            for column in COLUMNS:
                value = row.get(column)
                if isinstance(value, float) and value == value:
                    by_group.setdefault(row["group"], {}).setdefault(column, []).append(value)
    summary = {group: {column: round(sum(v) / len(v), 4) for column, v in columns.items()}
               for group, columns in sorted(by_group.items())}
    return {"overrides": overrides, "clips": len(clips), "generate_s": round(generate_s, 1), "groups": summary,
            **({"musicnn_real_vs_real": real_vs_real} if real_vs_real is not None else {}),
            **({"musicnn_heldout_real": heldout_real} if heldout_real is not None else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/demo/checkpoint.pt")
    parser.add_argument("--prompts", default="bench/results/tuning/prompts.jsonl")
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"),
                        help="a variant: name and GenerateConfig overrides as JSON (repeatable)")
    parser.add_argument("--groups", nargs="+", default=["chords_given", "all_given"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--judges", nargs="+", default=["chords", "clarity"], help="judge roles to run")
    parser.add_argument("--reference-manifest", help="real clips for the Fréchet distance (needs the embedding judge)")
    parser.add_argument("--heldout-real", metavar="REPORT",
                        help="the tuning split's ceiling report.json: its source tracks are the same-size yardstick")
    parser.add_argument("--json")
    args = parser.parse_args()
    from pipeline.config import read_params_if_present

    params = read_params_if_present(args.params)
    heldout = HeldoutReal.from_report(args.heldout_real) if args.heldout_real else None
    # Tuning needs the chord judge and the clarity statistic only (CREPE and musicnn are the slow ones).
    judges = {**params.get("model_eval", {}).get("judges", {}), "roles": args.judges}
    params = {**params, "model_eval": {**params.get("model_eval", {}), "judges": judges}}
    variants = {name: json.loads(text) for name, text in args.variant} if args.variant else DEFAULT_VARIANTS
    figures: dict = {"checkpoint": args.checkpoint, "prompts": args.prompts, "seeds": args.seeds, "variants": {}}
    memo: dict = {}  # the reference clips are embedded once for every variant
    with tempfile.TemporaryDirectory(prefix="judged_controls_") as tmp:
        for name, overrides in variants.items():
            figures["variants"][name] = run_variant(args.checkpoint, Path(args.prompts), overrides, args.groups,
                                                    args.seeds, params, Path(tmp) / name, args.reference_manifest, memo,
                                                    heldout)
            print(name, json.dumps(figures["variants"][name]["groups"]), flush=True)
    report_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
