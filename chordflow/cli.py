"""The ``chordflow`` command. Each module that owns a subcommand exposes ``add_cli(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Fills the stage registry with the built-in stages ("module:Class" strings, nothing heavy), so
# that ``chordflow run --help`` lists them and every subcommand can build a stage by name.
import stages  # noqa: F401

# Modules that contribute subcommands, in help order. Imported lazily by name so that
# ``chordflow --help`` stays fast and does not import torch/tensorflow.
CLI_MODULES: tuple[str, ...] = (
    "pipeline.corpus.cli",
    "pipeline.manifest",
    "pipeline.run_cli",
    "stages.chords.cli",
    "stages.drums.cli",
    "stages.melody.cli",
    "stages.latents.cli",
    "model.cli",
    "model.evaluation.cli",
    "chordflow.studio.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chordflow",
        description="Temporally controlled text-to-music: feature pipeline, training and sampling.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in CLI_MODULES:
        importlib.import_module(module_name).add_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
