"""``chordflow latents {extract,stats,eval,plot}``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pipeline.config import load_section, read_params_if_present

if TYPE_CHECKING:
    from stages.latents.config import LatentsConfig

STAGE_NAME = "latents"


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.run_cli import add_stage_cli

    actions, extract = add_stage_cli(subparsers, STAGE_NAME, "codec latents of mix and drum stem; stats; codec evaluation",
                                     "encode every track of a manifest into shards", _cli_extract)
    extract.add_argument("--drums", help="drums stage output folder (its stems are encoded to drums_coarse)")

    stats = actions.add_parser("stats", help="normalisation statistics of stored latents (JSON)")
    stats.add_argument("--features", required=True, help="latents stage output folder")
    stats.add_argument("--out", required=True, help="statistics file to write (JSON)")
    stats.add_argument("--manifest", help="only tracks of this (training) manifest")
    stats.add_argument("--index", help="corpus index.jsonl mapping clip ids (audio file stems) to splits")
    stats.add_argument("--split", help="with --index: only clips of this split, e.g. train")
    stats.add_argument("--column", default="latents", help="column to describe (latents or drums_coarse)")
    stats.add_argument("--no-progress", action="store_true")
    stats.set_defaults(func=_cli_stats)

    evaluate = actions.add_parser("eval", help="round-trip quality, harmony and melody preservation of codecs")
    evaluate.add_argument("--manifest", required=True)
    evaluate.add_argument("--truth", required=True, help="folder of <clip_id>.json truth files")
    evaluate.add_argument("--codec", action="append", help="codec to evaluate (repeatable; default: every codec)")
    evaluate.add_argument("--params", default="params.yaml",
                          help="codec options come from its latents section, the melody judge from melody")
    evaluate.add_argument("--limit", type=int, default=20, help="clips to use (first by track id; 0 = all)")
    evaluate.add_argument("--no-harmony", action="store_true", help="skip the Chordino harmony measure")
    evaluate.add_argument("--no-melody", action="store_true", help="skip the melody stage's pitch measure")
    evaluate.add_argument("--workers", type=int, help="override executor.workers (the clips run there)")
    evaluate.add_argument("--out", help="metrics JSON (DVC metrics)")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=_cli_eval)

    plot = actions.add_parser("plot", help="PNG of original vs decoded spectrograms of one file")
    plot.add_argument("--audio", required=True)
    plot.add_argument("--out", required=True, help="PNG to write")
    plot.add_argument("--codec", help="codec (default: latents.codec of the params file)")
    plot.add_argument("--params", default="params.yaml")
    plot.add_argument("--offset", type=float, default=0.0, help="seconds skipped at the start")
    plot.add_argument("--seconds", type=float, default=10.0, help="seconds drawn")
    plot.set_defaults(func=_cli_plot)


def _config(params: Mapping[str, Any]) -> "LatentsConfig":
    from stages.latents.config import LatentsConfig

    return load_section(LatentsConfig, STAGE_NAME, params)


def _cli_extract(args: argparse.Namespace) -> int:
    from pipeline.run_cli import run_stage_from_args

    # the drums folder is a path: dvc.yaml gives it on the command line, params.yaml does not
    return run_stage_from_args(STAGE_NAME, args, {"drums_dir": args.drums} if args.drums else None)


def training_track_ids(manifest: str | None, index: str | None, split: str | None) -> set[str] | None:
    """Track ids of ``manifest`` (all if None), kept only if their clip is in ``split`` of ``index``."""
    if bool(index) != bool(split):
        raise SystemExit("latents stats: --index and --split go together")
    if manifest is None and index is None:
        return None
    from pipeline.manifest import read_manifest

    if manifest is None:
        raise SystemExit("latents stats: --split needs --manifest to map clips to track ids")
    table = read_manifest(manifest)
    pairs = zip(table.column("track_id").to_pylist(), table.column("path").to_pylist())
    if index is None:
        return {track_id for track_id, _ in pairs}
    splits = {}
    with open(index, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                entry = json.loads(line)
                splits[entry["clip_id"]] = entry.get("split")
    return {track_id for track_id, path in pairs if splits.get(Path(path).stem) == split}


def _cli_stats(args: argparse.Namespace) -> int:
    from stages.latents.stats import compute_stats, describe

    track_ids = training_track_ids(args.manifest, args.index, args.split)
    stats = compute_stats(args.features, track_ids, args.column, progress=not args.no_progress)
    stats.save(args.out)
    print(f"{args.out}: {json.dumps(describe(stats))}")
    return 0


def _cli_eval(args: argparse.Namespace) -> int:
    from pipeline.executors import executor_from_params
    from pipeline.metrics import write_metrics
    from stages.latents.codec import CodecError
    from stages.latents.codecs import CODECS, make_codec
    from stages.latents.evaluate import JudgeSettings, evaluate_codec, format_table, select_clips

    params = read_params_if_present(args.params)
    config = _config(params)
    clips = select_clips(args.manifest, args.truth, args.limit or None)
    settings = JudgeSettings.of(not args.no_harmony, not args.no_melody, params.get("melody"))
    results: dict[str, dict[str, Any]] = {}
    with executor_from_params(params, workers=args.workers) as executor:
        for name in args.codec or sorted(CODECS):
            try:
                codec = make_codec(name, getattr(config, name))
            except CodecError as exc:  # e.g. EnCodec weights not downloaded: say so, evaluate the rest
                results[name] = {"error": str(exc).split(". ")[0]}
                continue
            results[name] = evaluate_codec(codec, clips, settings, progress=not args.no_progress, executor=executor)
    print(format_table(results))
    if args.out:
        write_metrics(results, args.out)
    return 0 if any("error" not in r for r in results.values()) else 1


def _cli_plot(args: argparse.Namespace) -> int:
    from pipeline.audio import load_audio
    from stages.latents.codecs import make_codec
    from stages.latents.plot import plot_roundtrip

    config = _config(read_params_if_present(args.params))
    name = args.codec or config.codec
    codec = make_codec(name, getattr(config, name, None))
    samples, _ = load_audio(args.audio, sample_rate=codec.sample_rate, channels=1, offset_s=args.offset,
                            duration_s=args.seconds)
    out = plot_roundtrip(codec, samples[0], args.out, title=f"{os.path.basename(args.audio)}: {name}")
    print(out)
    return 0
