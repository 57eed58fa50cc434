"""``chordflow run`` and ``chordflow shards``, and the helpers every stage's command line uses.

A stage package's ``cli`` module calls :func:`add_stage_cli` for its ``chordflow <stage> extract``;
all of them take the options of :func:`add_run_arguments` and end in :func:`run_stage_from_args`.
The runner and the executors are imported when a command runs, not when the parser is built
(``chordflow --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Mapping

from pipeline.config import load_config, read_params_if_present
from pipeline.planning import ShardingConfig
from pipeline.stage import available_stages


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a registered stage over a manifest into a shard folder")
    parser.add_argument("stage", help=f"stage name ({', '.join(available_stages())}) or module:Class")
    add_run_arguments(parser)
    parser.set_defaults(func=lambda args: run_stage_from_args(args.stage, args))

    info = subparsers.add_parser("shards", help="summarise a stage output folder (metadata, errors)")
    info.add_argument("folder")
    info.set_defaults(func=_cli_shards)


def add_stage_cli(
    subparsers: argparse._SubParsersAction,
    stage_name: str,
    help: str,
    extract_help: str,
    extract: Callable[[argparse.Namespace], int] | None = None,
) -> tuple[argparse._SubParsersAction, argparse.ArgumentParser]:
    """Add ``chordflow <stage_name>`` with its ``extract`` action (the standard run options).

    ``extract`` defaults to :func:`run_stage_from_args` for the stage. Returns the stage's action
    subparsers (for its other actions: eval, plot, ...) and the ``extract`` parser (for extra options).
    """
    parser = subparsers.add_parser(stage_name, help=help)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    extract_parser = actions.add_parser("extract", help=extract_help)
    add_run_arguments(extract_parser)
    extract_parser.set_defaults(func=extract or (lambda args: run_stage_from_args(stage_name, args)))
    return actions, extract_parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every stage's ``extract`` subcommand takes (see :func:`run_stage_from_args`)."""
    parser.add_argument("--manifest", required=True, help="manifest parquet")
    parser.add_argument("--out", required=True, help="output folder for shard-*.parquet")
    parser.add_argument("--params", default="params.yaml", help="params file (stage section = stage name)")
    parser.add_argument("--executor", choices=["serial", "process", "dask", "slurm"], help="override executor.backend")
    parser.add_argument("--workers", type=int, help="override executor.workers")
    parser.add_argument("--tracks-per-shard", type=int, help="override sharding.tracks_per_shard")
    parser.add_argument("--min-shards", type=int, help="override sharding.min_shards (e.g. the worker count)")
    parser.add_argument("--retry-errors", action="store_true", help="recompute shards that recorded track errors")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_stage_from_args(stage_name: str, args: argparse.Namespace, overrides: Mapping[str, Any] | None = None) -> int:
    """Run ``stage_name`` with the options of :func:`add_run_arguments`; exit code 1 if a shard failed.

    ``overrides`` are merged into the stage's params section (e.g. an input folder that
    ``dvc.yaml`` passes on the command line rather than through ``params.yaml``).
    """
    from pipeline.executors import executor_from_params
    from pipeline.runner import run_stage

    params = read_params_if_present(args.params)
    sharding_values = dict(params.get("sharding") or {})
    if args.tracks_per_shard:
        sharding_values["tracks_per_shard"] = args.tracks_per_shard
    if args.min_shards:
        sharding_values["min_shards"] = args.min_shards
    sharding = load_config(ShardingConfig, sharding_values, where="sharding")
    try:
        with executor_from_params(params, args.executor, args.workers) as executor:
            stage_params = {**(params.get(stage_name) or {}), **(overrides or {})}
            report = run_stage(stage_name, stage_params, args.manifest, args.out, sharding, executor,
                               args.retry_errors, progress=not args.no_progress)
    except OSError as exc:  # disk full, read-only output folder, ...: one clear line, no traceback
        print(f"{stage_name}: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.stage}: {report.shards} shards ({report.written} written, {report.skipped} already complete), "
        f"{report.track_errors} track errors, {len(report.failed_shards)} failed shards in {report.seconds:.1f}s"
    )
    for index, message in sorted(report.failed_shards.items()):
        print(f"  shard {index}: {message}")
    return 0 if report.ok else 1


def _cli_shards(args: argparse.Namespace) -> int:
    from pipeline.reader import StageStore

    store = StageStore(args.folder)
    info = store.info
    print(f"{args.folder}: stage {info.stage} v{info.version}, params {info.params_hash}, "
          f"frame rate {info.frame_rate}, {len(store.shard_paths)} shards, {len(store)} tracks")
    for spec in info.features:
        print(f"  {spec.name}: {spec.dtype} {list(spec.shape)}" + (f" @ {spec.frame_rate} fps" if spec.frame_rate else ""))
    errors = store.errors().to_pylist()
    print(f"  {len(errors)} track errors")
    for err in errors:
        print(f"    [{err['error_type']}] {err['reason']}")
    return 0
