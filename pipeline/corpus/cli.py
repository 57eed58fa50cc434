"""``chordflow corpus render`` and ``chordflow corpus plot``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from pipeline.config import DEFAULT_PARAMS_PATH, ConfigError, load_config, load_section
from pipeline.corpus.config import CorpusConfig

log = logging.getLogger(__name__)
DEFAULT_OUT = "data/corpus"


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="render the ground-truth demo corpus (FluidSynth)")
    commands = corpus.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")

    render = commands.add_parser("render", help="render clips, truth sidecars and index.jsonl (resumable)")
    render.add_argument("--out", default=DEFAULT_OUT, help=f"corpus root (default {DEFAULT_OUT})")
    render.add_argument("--n", type=int, help="number of clips (overrides params)")
    render.add_argument("--seed", type=int, help="corpus seed (overrides params)")
    render.add_argument("--workers", type=int, help="parallel render processes (overrides params)")
    render.add_argument("--params", help=f"parameter file with a 'corpus' section (default {DEFAULT_PARAMS_PATH} if present)")
    render.add_argument("--soundfont", help="General MIDI .sf2 file (overrides params)")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    render.set_defaults(func=_render)

    plot = commands.add_parser("plot", help="draw a clip's chords, melody and drum onsets to a PNG")
    plot.add_argument("clip", help="clip id (e.g. clip_00003) or a truth JSON path")
    plot.add_argument("--corpus", default=DEFAULT_OUT, help=f"corpus root (default {DEFAULT_OUT})")
    plot.add_argument("--out", required=True, help="output PNG path")
    plot.set_defaults(func=_plot)


def load_corpus_config(params: str | None, overrides: dict[str, object]) -> CorpusConfig:
    """CorpusConfig from ``params`` (or ./params.yaml when present, else defaults) plus CLI overrides."""
    if params is not None:
        config = load_section(CorpusConfig, "corpus", params)
    elif DEFAULT_PARAMS_PATH.is_file():
        config = load_section(CorpusConfig, "corpus", DEFAULT_PARAMS_PATH)
    else:
        config = load_config(CorpusConfig, {}, where="corpus")
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **given) if given else config


def _render(args: argparse.Namespace) -> int:
    from pipeline.corpus.build import render_corpus
    from pipeline.corpus.render import RenderError

    try:
        config = load_corpus_config(args.params, {"n": args.n, "seed": args.seed, "workers": args.workers,
                                                  "soundfont": args.soundfont})
        summary = render_corpus(config, Path(args.out), progress=not args.no_progress)
    except (ConfigError, RenderError) as exc:
        print(f"chordflow corpus render: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


def _plot(args: argparse.Namespace) -> int:
    from pipeline.corpus.plot import plot_clip

    try:
        out = plot_clip(args.clip, args.corpus, args.out)
    except (OSError, ValueError) as exc:
        print(f"chordflow corpus plot: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0
