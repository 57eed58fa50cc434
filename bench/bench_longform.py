"""Long-form pieces: 3-minute clips with chords over the whole length (windowed continuation).

    python bench/bench_longform.py [--checkpoint models/demo/checkpoint.pt]
        [--prompts data/heldout/prompts.jsonl] [--group chords_given] [--pieces 10] [--seconds 180]
        [--short-seconds 30] [--batch 5] [--params params.yaml] [--json OUT]

Each of ``--pieces`` held-out prompts' chord progression is repeated over ``--seconds`` and generated
with the product's sampler (the checkpoint's settings plus the params ``generate`` section; windows
of ``window_seconds`` continued with ``overlap_seconds`` of pinned context). The chords stage
(Chordino, not the model) reads each piece back; chord accuracy (mir_eval majmin, duration-weighted)
is computed on the first minute and on the last minute against what was asked: drift = last − first.
Memory: the peak resident set while generating ``--seconds`` against the same for
``--short-seconds`` in the same run (bounded memory: the ratio stays near 1 as pieces grow).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import report_figures  # noqa: E402

import numpy as np  # noqa: E402

MINUTE = 60.0


def tiled(changes: list[list], period: float, seconds: float) -> list[tuple[str, float]]:
    """A (label, start) progression of ``period`` seconds repeated to ``seconds``."""
    out = []
    for k in range(int(np.ceil(seconds / period))):
        out += [(label, start + k * period) for label, start in changes if start + k * period < seconds]
    return out


def window(segments, start: float, stop: float):
    """(label, start, end) segments cropped to [start, stop) and shifted to start at 0."""
    return [(label, max(s, start) - start, min(e, stop) - start) for label, s, e in segments if e > start and s < stop]


class PeakRss:
    """The process's peak resident memory while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> "PeakRss":
        import psutil

        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="models/demo/checkpoint.pt")
    parser.add_argument("--prompts", default="data/heldout/prompts.jsonl")
    parser.add_argument("--group", default="chords_given")
    parser.add_argument("--pieces", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--short-seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from model.evaluation.score import chord_accuracy, requested_segments
    from model.sampling.generate import load_generator
    from pipeline.config import read_params_if_present
    from pipeline.stage import create_stage

    params = read_params_if_present(args.params)
    generator = load_generator(args.checkpoint, params.get("generate"))
    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("group") == args.group and r.get("chords")][: args.pieces]
    if len(rows) < args.pieces:
        raise SystemExit(f"{args.prompts}: only {len(rows)} prompts of group {args.group} with chords")
    chords_stage = create_stage("chords", params.get("chords"))
    period = float(rows[0].get("duration") or generator.params.seconds)

    def generate(items: list[dict], seconds: float) -> tuple[np.ndarray, list, float, int]:
        generator.set_generation_params(duration=seconds)
        progressions = [tiled(r["chords"], float(r.get("duration") or period), seconds) for r in items]
        started = time.perf_counter()
        with PeakRss() as memory:
            audio = generator.generate_music([r.get("description") for r in items], chords=progressions, progress=True)
        return audio, progressions, time.perf_counter() - started, memory.peak

    _, _, short_time, short_peak = generate(rows[: args.batch], args.short_seconds)
    pieces, long_time, long_peak = [], 0.0, 0
    for first in range(0, len(rows), args.batch):
        audio, progressions, took, peak = generate(rows[first: first + args.batch], args.seconds)
        long_time, long_peak = long_time + took, max(long_peak, peak)
        for row, wav, asked in zip(rows[first: first + args.batch], audio, progressions):
            found = chords_stage.segments(wav[None], generator.sample_rate)
            wanted = requested_segments(asked, args.seconds)
            scores = {}
            for name, (start, stop) in {"first_minute": (0.0, MINUTE),
                                        "last_minute": (args.seconds - MINUTE, args.seconds)}.items():
                request = [(label, s) for label, s, _ in window(wanted, start, stop)]
                scores[name] = chord_accuracy(request, MINUTE, window(found, start, stop))
            pieces.append({"id": row.get("id"), **{k: round(v, 4) for k, v in scores.items()}})
    first = float(np.nanmean([p["first_minute"] for p in pieces]))
    last = float(np.nanmean([p["last_minute"] for p in pieces]))
    figures = {
        "checkpoint": args.checkpoint, "pieces": len(pieces), "seconds": args.seconds,
        "window_seconds": generator.params.window_seconds, "overlap_seconds": generator.params.overlap_seconds,
        "chord_accuracy_first_minute": round(first, 4), "chord_accuracy_last_minute": round(last, 4),
        "drift_last_minus_first": round(last - first, 4), "per_piece": pieces,
        "generate_seconds_per_audio_minute": round(long_time / (len(pieces) * args.seconds / MINUTE), 2),
        "peak_rss_gib_short": round(short_peak / 2**30, 3), "peak_rss_gib_long": round(long_peak / 2**30, 3),
        "peak_rss_long_over_short": round(long_peak / short_peak, 3), "short_seconds": args.short_seconds,
        "short_generate_seconds": round(short_time, 1),
    }
    return report_figures(figures, args.json)


if __name__ == "__main__":
    main()
