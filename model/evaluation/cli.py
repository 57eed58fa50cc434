"""``chordflow eval {score,plot}``: score generated audio against its controls; draw one clip."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

DEFAULT_METRICS = "metrics/model.json"


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="re-analyse generated audio: chord/melody/drum adherence, Fréchet distance")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    score = actions.add_parser("score", help="score every clip of a generation report; write DVC metrics")
    score.add_argument("--report", required=True, help="DIR/report.json written by `chordflow generate`")
    score.add_argument("--out", default=DEFAULT_METRICS, help=f"metrics JSON (default {DEFAULT_METRICS})")
    score.add_argument("--per-clip", help="also write the per-clip rows to this JSON file")
    score.add_argument("--params", default="params.yaml",
                       help="params file: model_eval, and the chords/melody/drums analysers' sections")
    score.add_argument("--reference-manifest", help="manifest of real audio for the Fréchet distance")
    score.add_argument("--reference-limit", type=int, help="embed at most this many reference clips (0 = all; "
                                                           "default model_eval.reference_limit)")
    score.add_argument("--also", nargs=2, action="append", default=[], metavar=("REPORT", "OUT"),
                       help="score another report into OUT in the same run: the same workers, the reference "
                            "clips measured once (repeatable)")
    score.add_argument("--heldout-real", metavar="REPORT",
                       help="a report whose clips name their source_track (the ceiling run's report.json): "
                            "those tracks' real clips, as long as the generated ones, become the same-size "
                            "Fréchet yardstick, and the reference leaves them out")
    score.add_argument("--workers", type=int, help="override executor.workers (the clips are analysed there)")
    score.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    score.set_defaults(func=_score)

    plot = actions.add_parser("plot", help="requested vs extracted chord timeline of one generated clip (PNG)")
    plot.add_argument("--report", required=True, help="DIR/report.json")
    plot.add_argument("--clip", required=True, help="clip id in the report")
    plot.add_argument("--out", required=True, help="output PNG")
    plot.add_argument("--params", default="params.yaml")
    plot.set_defaults(func=_plot)

    spectrograms = actions.add_parser("spectrograms", help="one request: real clip, decode ceiling and generations "
                                      "as stacked spectrograms (PNG)")
    spectrograms.add_argument("--report", required=True, help="DIR/report.json of the generated held-out clips")
    spectrograms.add_argument("--ceiling", required=True, help="the ceiling run's report.json")
    spectrograms.add_argument("--manifest", required=True, help="manifest naming the real source tracks")
    spectrograms.add_argument("--clip", required=True, help="held-out request id, e.g. heldout_000")
    spectrograms.add_argument("--out", required=True, help="output PNG")
    spectrograms.set_defaults(func=_spectrograms)

    adherence = actions.add_parser("adherence", help="generated adherence vs chance and the decode ceiling (table)")
    adherence.add_argument("--generated", required=True, help="metrics JSON of the generated held-out clips")
    adherence.add_argument("--ceiling", required=True, help="metrics JSON of the ceiling run (codec round trip)")
    adherence.add_argument("--out", required=True, help="adherence JSON (DVC metrics)")
    adherence.set_defaults(func=_adherence)


def _fail(message: object) -> int:
    print(f"chordflow eval: {message}", file=sys.stderr)
    return 2


def _score(args: argparse.Namespace) -> int:
    from model.evaluation.embedding import HeldoutReal
    from model.evaluation.score import evaluate_report
    from pipeline.config import read_params_if_present
    from pipeline.executors import executor_from_params
    from pipeline.metrics import write_metrics

    if args.reference_limit is not None and args.reference_limit < 0:
        return _fail("--reference-limit must be >= 0")
    jobs = [(args.report, args.out, args.per_clip), *((report, out, None) for report, out in args.also)]
    try:
        params = read_params_if_present(args.params)
        heldout = HeldoutReal.from_report(args.heldout_real) if args.heldout_real else None
        memo: dict = {}
        with executor_from_params(params, workers=args.workers) as executor:
            for report, out, per_clip in jobs:
                metrics, rows = evaluate_report(report, params, args.reference_manifest, args.reference_limit,
                                                progress=not args.no_progress, executor=executor,
                                                reference_memo=memo, heldout=heldout)
                write_metrics(metrics, out)
                if per_clip:
                    write_metrics(rows, per_clip)
                print(format_table(metrics))
                print(f"wrote {out}" + (f" and {per_clip}" if per_clip else ""))
    except (ValueError, OSError) as exc:  # ReportError, ConfigError, an unreadable manifest
        return _fail(exc)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from model.evaluation.plot import plot_clip

    try:
        out = plot_clip(args.report, args.clip, args.out, args.params)
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        return _fail(exc)
    print(out)
    return 0


def _spectrograms(args: argparse.Namespace) -> int:
    from model.evaluation.spectrograms import plot_spectrograms, request_rows

    try:
        rows = request_rows(args.report, args.ceiling, args.manifest, args.clip)
        seconds = max(_duration(path) for _, path in rows[1:])
        out = plot_spectrograms(rows, args.out, title=f"held-out request {args.clip}", seconds=seconds)
    except (KeyError, ValueError, OSError) as exc:
        return _fail(exc)
    print(out)
    return 0


def _duration(path: object) -> float:
    from pipeline.audio import probe_audio

    return probe_audio(path).duration


def _cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f} (n={stats['n']})"


def format_table(metrics: dict[str, Any]) -> str:
    """Markdown table: one row per group, own score next to its chance twin."""
    from model.evaluation.score import SCORES

    groups = metrics["groups"]
    shown = [s for s in SCORES if any(s in g for g in groups.values())]
    lines = [f"eval: {metrics['clips']} clips ({metrics['clips_with_errors']} with errors), "
             f"chord metric {metrics['chord_metric']}", "",
             "| group | " + " | ".join(f"{s} | {s} chance" for s in shown) + " | no_chord_fraction |",
             "|---|" + "---|---|" * len(shown) + "---|"]
    for name, stats in groups.items():
        cells = [f"{_cell(stats.get(s))} | {_cell(stats.get(s + '_chance'))}" for s in shown]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_cell(stats.get('no_chord_fraction'))} |")
    frechet = metrics["frechet"]
    if "skipped" in frechet:
        lines += ["", f"frechet: skipped ({frechet['skipped']})"]
    else:
        lines += ["", f"frechet_distance ({frechet['embedding']}): {_number(frechet['distance'])} generated vs "
                      f"reference ({frechet['generated_windows']} vs {frechet['reference_windows']} windows); "
                      f"real vs real halves {_number(frechet['real_vs_real'])}"
                      + (f"; held-out real clips {_number(frechet['heldout_real'])}" if "heldout_real" in frechet else "")]
    lines += [f"skipped {part}: {reason}" for part, reason in metrics["skipped"].items()]
    for clip, errors in list(metrics["errors"].items())[:5]:
        lines.append(f"error {clip}: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    timing = metrics["timing"]
    lines.append(f"time: {timing['seconds']:.1f} s; analysis {timing['analysis_seconds_per_clip']} s per clip")
    return "\n".join(lines)


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _adherence(args: argparse.Namespace) -> int:
    from model.evaluation.adherence import markdown, write_adherence

    try:
        table = write_adherence(args.generated, args.ceiling, args.out)
    except (OSError, ValueError) as exc:
        return _fail(exc)
    print(markdown(table))
    return 0
