"""``chordflow chords {extract,build-vocab,eval,plot,export-audiocraft}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STAGE = "chords"
DEFAULT_TRUTH = "data/corpus/truth"


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.run_cli import add_stage_cli

    actions, _ = add_stage_cli(subparsers, STAGE, "chord timelines and frame-level chord indices (Chordino)",
                               "run the chords stage over a manifest into shards")

    vocab = actions.add_parser("build-vocab", help="build a chord vocabulary JSON from extracted shards")
    vocab.add_argument("--features", required=True, help="chords shard folder")
    vocab.add_argument("--out", required=True, help="output vocabulary JSON ({label: index})")
    vocab.add_argument("--min-frames", type=int, default=1, help="leave out labels covering fewer frames")
    vocab.add_argument("--max-size", type=int, help="at most this many labels, N and UNK included")
    vocab.set_defaults(func=_build_vocab)

    evaluate = actions.add_parser("eval", help="mir_eval chord metrics against the corpus truth")
    evaluate.add_argument("--features", required=True, help="chords shard folder")
    evaluate.add_argument("--truth", default=DEFAULT_TRUTH, help=f"folder of <clip>.json truth files (default {DEFAULT_TRUTH})")
    evaluate.add_argument("--out", help="metrics JSON to write (e.g. metrics/chords.json)")
    evaluate.set_defaults(func=_eval)

    plot = actions.add_parser("plot", help="draw one track's chord timeline, truth vs extracted, to a PNG")
    which = plot.add_mutually_exclusive_group(required=True)
    which.add_argument("--clip", help="audio file stem, e.g. clip_00003")
    which.add_argument("--track", help="track_id from the manifest")
    plot.add_argument("--features", required=True, help="chords shard folder")
    plot.add_argument("--truth", default=DEFAULT_TRUTH, help="folder of truth files (a missing one draws the extraction only)")
    plot.add_argument("--out", required=True, help="output PNG")
    plot.set_defaults(func=_plot)

    export = actions.add_parser(
        "export-audiocraft", help="write chords_per_track.pkl + chord_to_index_mapping.pkl (AudioCraft's JASCO layout)")
    export.add_argument("--features", required=True, help="chords shard folder")
    export.add_argument("--out", required=True, help="AudioCraft dataset root to write the two pickles into")
    export.add_argument("--vocabulary", help="'jasco' or a vocabulary JSON (default: the one the shards were made with)")
    export.set_defaults(func=_export)


def _fail(message: object) -> int:
    print(f"chordflow chords: {message}", file=sys.stderr)
    return 2


def _build_vocab(args: argparse.Namespace) -> int:
    from pipeline.reader import StoreError
    from stages.chords.vocab import VocabularyError
    from stages.chords.vocab_build import build_vocabulary_from_store

    try:
        vocabulary = build_vocabulary_from_store(args.features, args.min_frames, args.max_size)
    except (StoreError, VocabularyError, ValueError) as exc:
        return _fail(exc)
    vocabulary.write(args.out)
    print(f"{args.out}: {len(vocabulary)} labels (N, {len(vocabulary) - 2} chords, UNK)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pipeline.reader import StoreError
    from pipeline.metrics import write_metrics
    from stages.chords.evaluate import evaluate_store, format_table

    try:
        result = evaluate_store(args.features, args.truth)
    except (StoreError, ValueError, OSError) as exc:
        return _fail(exc)
    print(format_table(result))
    if args.out:
        write_metrics(result, args.out)
        print(f"wrote {args.out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pipeline.reader import StageStore, StoreError
    from stages.chords.plot import find_track, plot_timelines

    try:
        row = find_track(StageStore(args.features), clip=args.clip, track_id=args.track)
        truth_path = Path(args.truth) / f"{Path(row['path']).stem}.json"
        truth = json.loads(truth_path.read_text(encoding="utf-8"))["chords"] if truth_path.is_file() else None
        title = f"{row['track_id']} ({row['path']})" + ("" if truth is not None else f": no truth at {truth_path}")
        out = plot_timelines(truth, row["timeline"], args.out, title)
    except (StoreError, KeyError, ValueError, OSError) as exc:
        return _fail(exc)
    print(out)
    return 0


def _export(args: argparse.Namespace) -> int:
    from pipeline.reader import StoreError
    from stages.chords.export import export_audiocraft
    from stages.chords.vocab import Vocabulary, VocabularyError

    try:
        vocabulary = Vocabulary.load(args.vocabulary) if args.vocabulary else None
        counts = export_audiocraft(args.features, args.out, vocabulary)
    except (StoreError, VocabularyError, ValueError, OSError) as exc:
        return _fail(exc)
    print(f"{args.out}: {counts['tracks']} tracks, {counts['changes']} chord changes, "
          f"{counts['unknown']} labels mapped to UNK")
    return 0
