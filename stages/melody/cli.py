"""`chordflow melody {extract,eval,plot,fetch-weights}`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.config import ConfigError, load_section, read_params_if_present

log = logging.getLogger(__name__)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.run_cli import add_stage_cli
    from stages.melody.constants import DEFAULT_WEIGHTS_DIR, MODEL_NAMES, WEIGHTS_BASE_URL, WEIGHTS_ENV

    actions, _ = add_stage_cli(subparsers, "melody", "DeepSalience melody salience and JASCO's melody condition",
                               "run the melody stage over a manifest into shards")

    evaluate = actions.add_parser("eval", help="mir_eval melody metrics against the corpus truth (DVC metrics JSON)")
    evaluate.add_argument("--manifest", required=True, help="manifest parquet of the clips to score")
    evaluate.add_argument("--truth", required=True, help="folder of <clip_id>.json truth files")
    evaluate.add_argument("--features", help="the melody stage's shard folder: also score the stored condition")
    evaluate.add_argument("--out", required=True, help="metrics JSON to write")
    evaluate.add_argument("--params", default="params.yaml", help="sections melody and melody_eval")
    evaluate.add_argument("--limit", type=int, help="override melody_eval.limit (0 = all clips)")
    evaluate.add_argument("--workers", type=int, help="override executor.workers (the clips' salience runs there)")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=_eval)

    plot = actions.add_parser("plot", help="PNG of a salience map with the truth melody overlaid")
    plot.add_argument("--audio", required=True)
    plot.add_argument("--truth", help="corpus truth JSON whose melody to overlay")
    plot.add_argument("--out", required=True, help="PNG to write")
    plot.add_argument("--model", choices=MODEL_NAMES, help="salience model (default: melody.model)")
    plot.add_argument("--params", default="params.yaml")
    plot.set_defaults(func=_plot)

    fetch = actions.add_parser(
        "fetch-weights", help="download the DeepSalience weights from the original repository (SHA-256 checked)")
    fetch.add_argument("--dest", help=f"folder (default: melody.weights_dir, ${WEIGHTS_ENV}, or {DEFAULT_WEIGHTS_DIR})")
    fetch.add_argument("--base-url", default=WEIGHTS_BASE_URL, help="where <model>.h5 files are served")
    fetch.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    fetch.add_argument("--force", action="store_true", help="download even if a file with the right hash is there")
    fetch.add_argument("--params", default="params.yaml")
    fetch.set_defaults(func=_fetch)


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from pipeline.executors import executor_from_params
    from pipeline.metrics import write_metrics
    from stages.melody.config import MelodyConfig, MelodyEvalConfig
    from stages.melody.evaluate import evaluate_corpus, manifest_clips

    params = read_params_if_present(args.params)
    stage = load_section(MelodyConfig, "melody", params)
    eval_cfg = load_section(MelodyEvalConfig, "melody_eval", params)
    if args.limit is not None:
        eval_cfg = dataclasses.replace(eval_cfg, limit=args.limit)
    clips = manifest_clips(args.manifest, args.truth, eval_cfg.limit)
    with executor_from_params(params, workers=args.workers) as executor:
        summary = evaluate_corpus(clips, stage, eval_cfg, args.features, progress=not args.no_progress,
                                  executor=executor)
    write_metrics(summary, args.out)
    print(f"melody eval: {summary['clips']} clips, backend {stage.backend}, voicing threshold "
          f"{eval_cfg.voicing_threshold} -> {args.out}")
    for name, metrics in summary.items():
        if isinstance(metrics, dict):
            print(f"  {name:9s} " + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "clips"))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from stages.melody.config import MelodyConfig
    from stages.melody.plot import plot_salience

    stage = load_section(MelodyConfig, "melody", read_params_if_present(args.params))
    out = plot_salience(args.audio, args.out, stage, args.truth, args.model)
    print(f"melody plot: {out}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from stages.melody.fetch import FetchError, fetch_weights
    from stages.melody.weights import resolve_weights_dir

    try:
        configured = (read_params_if_present(args.params).get("melody") or {}).get("weights_dir")
    except ConfigError:
        configured = None
    dest = Path(args.dest) if args.dest else resolve_weights_dir(configured)
    try:
        paths = fetch_weights(dest, args.base_url, args.models, force=args.force)
    except FetchError as exc:
        print(f"melody fetch-weights: {exc}")
        return 1
    print(f"melody fetch-weights: {len(paths)} files verified in {dest}")
    return 0
