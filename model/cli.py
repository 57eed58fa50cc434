"""``chordflow metadata``, ``train``, ``train-plot``, ``generate`` and ``heldout``.

Multi-GPU: ``torchrun --nproc_per_node N -m chordflow train ...`` (DDP, one rank per GPU).
On a SLURM cluster: ``chordflow train --executor slurm`` submits the run as a requeueable job
(submitit Checkpointable); a timed-out or preempted job resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from pipeline.config import ConfigError, load_section, read_params_if_present


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    meta = subparsers.add_parser("metadata", help="write the training metadata JSONL (path, split, description) "
                                 "of the demo corpus")
    meta.add_argument("--corpus", default="data/corpus", help="corpus root with index.jsonl and truth/")
    meta.add_argument("--out", required=True, help="output JSONL")
    meta.set_defaults(func=_metadata)

    train = subparsers.add_parser("train", help="train the flow-matching model on cached features (resumable)")
    train.add_argument("--manifest", required=True)
    train.add_argument("--metadata", help="JSONL of split/description per track (chordflow corpus metadata)")
    train.add_argument("--latents", required=True, help="latents stage folder")
    train.add_argument("--chords", required=True, help="chords stage folder")
    train.add_argument("--melody", required=True, help="melody stage folder")
    train.add_argument("--stats", required=True, help="latent normalisation stats JSON (chordflow latents stats)")
    train.add_argument("--out", required=True, help="run folder: checkpoint.pt, losses.tsv, train.json")
    train.add_argument("--params", default="params.yaml")
    train.add_argument("--steps", type=int, help="override train.steps")
    train.add_argument("--continue-from", help="fine-tune: start from this checkpoint's weights")
    train.add_argument("--executor", choices=["local", "slurm"], default="local",
                       help="slurm: submit as a requeueable job with executor.slurm settings")
    train.add_argument("--stop-at", type=int, help=argparse.SUPPRESS)  # interruption tests
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=_train)

    plot = subparsers.add_parser("train-plot", help="PNG of a run's training and validation losses")
    plot.add_argument("--run", required=True, help="run folder written by chordflow train")
    plot.add_argument("--out", required=True)
    plot.set_defaults(func=_plot)

    gen = subparsers.add_parser("generate", help="generate audio for each line of a prompts JSONL")
    gen.add_argument("--checkpoint", required=True, help="a chordflow checkpoint.pt, or a released JASCO folder "
                     "(state_dict.bin + compression_state_dict.bin)")
    gen.add_argument("--t5", help="JASCO folders: local T5-base folder (default $CHORDFLOW_T5)")
    gen.add_argument("--chord-map", help="JASCO folders: chord label -> index map (.json or .pkl; default JASCO's)")
    gen.add_argument("--prompts", required=True, help="JSONL: description, chords, drums, melody, duration ...")
    gen.add_argument("--out", required=True, help="folder for clips/*.wav and report.json")
    gen.add_argument("--params", default="params.yaml", help="generate section, over the checkpoint's "
                     "recommended settings (+ drums/melody for references)")
    gen.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a generate param, e.g. --set steps=32 --set solver=dopri5")
    gen.add_argument("--no-progress", action="store_true")
    gen.set_defaults(func=_generate)

    export = subparsers.add_parser("export-jasco", help="write a jasco-preset run (or a loaded release) in "
                                   "JASCO's released form: state_dict.bin + compression_state_dict.bin")
    export.add_argument("run", help="run folder (its checkpoint.pt), a checkpoint file, or a JASCO folder")
    export.add_argument("out", help="output folder")
    export.add_argument("--plain-weights", action="store_true", help="export the plain weights, not the EMA")
    export.set_defaults(func=_export_jasco)

    held = subparsers.add_parser("heldout", help="prompts and decode-ceiling clips for held-out tracks")
    for name in ("manifest", "metadata", "chords", "melody", "drums", "out"):
        held.add_argument(f"--{name}", required=True)
    held.add_argument("--latents", required=True, help="latents stage folder (names the codec for the ceiling)")
    held.add_argument("--truth", help="folder of ground-truth JSON (chords) named by audio stem")
    held.add_argument("--splits", nargs="+", default=["valid", "test"])
    held.add_argument("--seconds", type=float, default=10.0)
    held.add_argument("--limit", type=int, default=0)
    held.add_argument("--no-progress", action="store_true")
    held.set_defaults(func=_heldout)


def _metadata(args: argparse.Namespace) -> int:
    from model.training.metadata import write_corpus_metadata

    try:
        count = write_corpus_metadata(args.corpus, args.out)
    except (OSError, ValueError, KeyError) as exc:
        print(f"chordflow metadata: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {count} tracks")
    return 0


def run_training(paths: Any, model_params: Any, train_cfg: Any, continue_from: str | None = None,
                 progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Build a :class:`Trainer` and run it (module level so SLURM jobs can pickle it)."""
    from model.training.train import Trainer

    return Trainer(paths, model_params, train_cfg, continue_from).run(progress=progress, stop_at=stop_at)


def _train(args: argparse.Namespace) -> int:
    from model.config import ModelParams, TrainConfig
    from model.training.train import TrainPaths

    try:
        params = read_params_if_present(args.params)
        model_params = load_section(ModelParams, "model", params)
        cfg = load_section(TrainConfig, "train", params)
        if args.steps is not None:
            cfg = dataclasses.replace(cfg, steps=args.steps)
    except ConfigError as exc:
        print(f"chordflow train: {exc}", file=sys.stderr)
        return 2
    paths = TrainPaths(manifest=args.manifest, latents=args.latents, chords=args.chords, melody=args.melody,
                       stats=args.stats, out_dir=args.out, metadata=args.metadata)
    call = (paths, model_params, cfg, args.continue_from, not args.no_progress, args.stop_at)
    try:
        if args.executor == "slurm":
            from pipeline.executors import executor_from_params

            with executor_from_params(params, backend="slurm") as executor:
                future = executor.submit(run_training, *call[:4], False, args.stop_at)
                print(f"submitted SLURM job {future.job_id}; logs {future.stdout_path}", file=sys.stderr)
                summary = future.result()
        else:
            summary = run_training(*call)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"chordflow train: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from model.training.plots import plot_training

    try:
        print(plot_training(args.run, args.out))
    except (OSError, ValueError) as exc:
        print(f"chordflow train-plot: {exc}", file=sys.stderr)
        return 2
    return 0


def _generate(args: argparse.Namespace) -> int:
    from model.sampling.generate import ReferenceConfigs, generate_batch_file, load_generator

    try:
        params = read_params_if_present(args.params)
        references = ReferenceConfigs.from_params(params)  # drums / melody / chords sections, parsed once here
        overrides = {key: _scalar(value) for key, value in (item.split("=", 1) for item in args.set)}
        generator = load_generator(args.checkpoint, params.get("generate"), overrides, t5=args.t5,
                                   chord_map=args.chord_map)
        report = generate_batch_file(generator, args.prompts, args.out, references, progress=not args.no_progress)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"chordflow generate: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(report['clips'])} clips, {len(report['rejects'])} rejected")
    for reject in report["rejects"]:
        print(f"  rejected {reject['where']}: {reject['reason']}", file=sys.stderr)
    return 1 if report["rejects"] and not report["clips"] else 0


def _export_jasco(args: argparse.Namespace) -> int:
    from pathlib import Path

    from model.checkpoint import load_artifact
    from model.jasco.artifact import export_run
    from model.training.train import CHECKPOINT_NAME

    source = Path(args.run)
    if source.is_dir() and (source / CHECKPOINT_NAME).is_file():
        source = source / CHECKPOINT_NAME
    try:
        out = export_run(load_artifact(source), args.out, use_ema=not args.plain_weights)
    except (ValueError, OSError) as exc:
        print(f"chordflow export-jasco: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: state_dict.bin, compression_state_dict.bin (from {source})")
    return 0


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _heldout(args: argparse.Namespace) -> int:
    from model.evaluation.heldout import build_heldout
    from pipeline.reader import StageStore
    from stages.latents.codecs import make_codec
    from stages.latents.config import LatentsConfig

    try:
        latents = StageStore(args.latents)
        latents_config = latents.config(LatentsConfig)
        codec = make_codec(latents_config.codec, latents_config.codec_options())
        summary = build_heldout(manifest=args.manifest, metadata=args.metadata, chords_dir=args.chords,
                                melody_dir=args.melody, drums_dir=args.drums, out_dir=args.out, codec=codec,
                                seconds=args.seconds, splits=tuple(args.splits), truth_dir=args.truth,
                                limit=args.limit, frame_rate=latents.frame_rate,
                                progress=not args.no_progress)
    except (ValueError, OSError) as exc:
        print(f"chordflow heldout: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
