"""``chordflow drums {extract,eval,plot}``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import load_section, read_params_if_present
from pipeline.metrics import write_metrics

if TYPE_CHECKING:
    from stages.drums.config import DrumsConfig

STAGE = "drums"


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.run_cli import add_stage_cli

    actions, _ = add_stage_cli(subparsers, STAGE, "drum stem separation (Demucs or HPSS) and drum onset envelope",
                               "separate the drum stem of every manifest track into shards + stems/", _cli_extract)

    evaluate = actions.add_parser("eval", help="onset F1 and SI-SDR of the stems against a rendered corpus")
    evaluate.add_argument("--features", required=True, help="drums stage folder")
    evaluate.add_argument("--corpus", required=True, help="rendered corpus folder (index.jsonl, truth/, stems/drums/)")
    evaluate.add_argument("--out", required=True, help="metrics JSON (DVC metrics)")
    evaluate.add_argument("--per-clip", help="also write every clip's scores to this JSON file")
    evaluate.add_argument("--params", default="params.yaml", help="params file (drums.onset settings)")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=_cli_eval)

    plot = actions.add_parser("plot", help="draw one clip: mix, stem with true/detected onsets, envelope")
    plot.add_argument("--features", required=True, help="drums stage folder")
    plot.add_argument("--corpus", required=True, help="rendered corpus folder")
    plot.add_argument("--clip", help="clip id (default: the first clip with drums)")
    plot.add_argument("--out", required=True, help="PNG path")
    plot.add_argument("--params", default="params.yaml")
    plot.set_defaults(func=_cli_plot)


def _config(params_path: str) -> "DrumsConfig":
    """The ``drums`` section, parsed once here and handed down typed."""
    from stages.drums.config import DrumsConfig

    return load_section(DrumsConfig, STAGE, read_params_if_present(params_path))


def _cli_extract(args: argparse.Namespace) -> int:
    from pipeline.run_cli import run_stage_from_args
    from pipeline.stage import create_stage
    from stages.drums.stems import prune_orphan_stems, remove_shards_missing_stems

    stage = create_stage(STAGE, _config(args.params))  # bad params fail here, before any worker starts
    if stage.config.separator == "demucs":
        # fail in seconds, not once per shard in every worker, when the weights are not on disk
        from stages.drums.demucs_weights import DemucsWeightsMissing, locate_weights, plan_bag

        demucs = stage.config.demucs
        try:
            locate_weights(plan_bag(demucs.model, demucs.weights_dir), demucs.weights_dir)
        except (DemucsWeightsMissing, ValueError) as exc:  # missing files, or a malformed bag definition
            print(f"drums: {exc}")
            return 2
    remove_shards_missing_stems(args.out)  # a complete shard whose stems were deleted is recomputed
    code = run_stage_from_args(STAGE, args)
    removed = prune_orphan_stems(args.out)
    if removed:
        print(f"drums: removed {removed} stem files that no shard refers to")
    return code


def _cli_eval(args: argparse.Namespace) -> int:
    from stages.drums.evaluate import evaluate_stems, summarize

    config = _config(args.params)
    try:
        evaluation = evaluate_stems(args.features, args.corpus, config.onset, progress=not args.no_progress)
    except (OSError, ValueError) as exc:  # no shards, another stage's folder, no corpus index, ...
        print(f"drums eval: {exc}")
        return 1
    metrics = summarize(evaluation)
    write_metrics(metrics, args.out)
    if args.per_clip:
        write_metrics([dataclasses.asdict(s) for s in evaluation.scores], args.per_clip)
    print(f"drums eval ({evaluation.separator}, {metrics['clips_with_drums']} clips with drums, "
          f"{metrics['clips_without_drums']} without, {metrics['clips_failed']} unreadable): onset F1 {_fmt(metrics['onset_f1'])} "
          f"(mix {_fmt(metrics['onset_f1_mix'])}), SI-SDR {_fmt(metrics['si_sdr_db'])} dB "
          f"(mix {_fmt(metrics['si_sdr_mix_db'])} dB), drumless stem/mix {_fmt(metrics['drumless_stem_to_mix_db'])} dB")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cli_plot(args: argparse.Namespace) -> int:
    from pipeline.reader import StageStore
    from stages.drums.evaluate import read_index
    from stages.drums.plot import plot_separation

    config = _config(args.params)
    store = StageStore(args.features)
    index = read_index(args.corpus)
    rows = {Path(store.get(t)["path"]).stem: t for t in store.track_ids()}
    clip = args.clip or next((c for c in sorted(rows) if c in index and index[c]["has_drums"]), None)
    if clip not in rows or clip not in index:
        print(f"drums plot: clip {clip!r} is not in both {args.features} and {args.corpus}")
        return 1
    out = plot_separation(store.get(rows[clip]), args.features, index[clip], args.corpus, args.out,
                          store.frame_rate, config.onset)
    print(f"wrote {out}")
    return 0
