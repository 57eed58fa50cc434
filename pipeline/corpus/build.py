"""Render the whole corpus: plan, skip complete clips, render the rest in a process pool, index.

``index.jsonl`` (one JSON line per clip, sorted by clip id) is rewritten atomically at the end
from the truth of every clip of the plan, rendered now or earlier.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.atomic import atomic_write_text, remove_stale_temp_files
from pipeline.corpus.clip import ClipResult, render_clip
from pipeline.corpus.config import CorpusConfig
from pipeline.corpus.plan import OUTPUT_DIRS, ClipPlan, plan_corpus
from pipeline.corpus.render import check_soundfont, find_fluidsynth

log = logging.getLogger(__name__)
INDEX_NAME = "index.jsonl"


@dataclasses.dataclass(frozen=True)
class CorpusSummary:
    """What a render did: clip counts, failures and timing (seconds)."""

    root: Path
    planned: int
    rendered: int
    skipped: int
    replaced: int
    failed: tuple[str, ...]
    entries: tuple[dict[str, Any], ...]
    wall_seconds: float
    render_seconds: float  # summed over clips rendered now (CPU-side time per clip x count)

    def _count(self, key) -> str:
        counts = collections.Counter(key(e) for e in self.entries)
        return ", ".join(f"{name} {counts[name]}" for name in sorted(counts))

    def lines(self) -> list[str]:
        """Human-readable summary printed at the end of ``chordflow corpus render``."""
        total = sum(e["duration"] for e in self.entries)
        per_clip = self.render_seconds / self.rendered if self.rendered else 0.0
        lines = [
            f"corpus {self.root}: {len(self.entries)}/{self.planned} clips, {total / 60:.1f} min of audio",
            f"  rendered {self.rendered}, up to date {self.skipped}, replaced {self.replaced}, failed {len(self.failed)}",
            f"  sources: {self._count(lambda e: e['source'].split(':')[0])}",
            f"  splits: {self._count(lambda e: e['split'])}",
            f"  formats: {self._count(lambda e: '{}/{}Hz/{}ch'.format(e['format'], e['sample_rate'], e['channels']))}",
            f"  with drums: {sum(e['has_drums'] for e in self.entries)}",
            f"  time: {self.wall_seconds:.1f} s wall, {per_clip:.2f} s per rendered clip (one worker)",
        ]
        lines += [f"  FAILED {message}" for message in self.failed]
        return lines


def _run_pool(config: CorpusConfig, plans: list[ClipPlan], root: Path, progress: bool) -> list[ClipResult]:
    results: list[ClipResult] = []
    if config.workers == 1 or len(plans) <= 1:
        with tqdm(total=len(plans), desc="corpus", unit="clip", disable=not progress) as bar:
            for plan in plans:
                results.append(render_clip(config, plan, root))
                bar.update()
        return results
    # Workers are forked before the progress bar starts its monitor thread; clip work imports
    # music21 lazily, so the forked processes start small.
    with concurrent.futures.ProcessPoolExecutor(max_workers=config.workers) as pool:
        futures = {pool.submit(render_clip, config, plan, root): plan for plan in plans}
        with tqdm(total=len(plans), desc="corpus", unit="clip", disable=not progress) as bar:
            for future in concurrent.futures.as_completed(futures):
                plan = futures[future]
                try:
                    results.append(future.result())
                except Exception as exc:  # a crashed worker loses its clips, not the corpus
                    results.append(ClipResult(plan.index, None, False, error=f"{type(exc).__name__}: {exc}"))
                bar.update()
    return results


def render_corpus(config: CorpusConfig, root: str | Path, progress: bool = True) -> CorpusSummary:
    """Render ``config.n`` clips under ``root`` (resumable); raises RenderError if tools are missing."""
    started = time.perf_counter()
    root = Path(root)
    find_fluidsynth(config.fluidsynth)
    check_soundfont(config.soundfont)
    for folder in OUTPUT_DIRS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(root / folder)
    remove_stale_temp_files(root)
    plans = plan_corpus(config)
    results = sorted(_run_pool(config, plans, root, progress), key=lambda r: r.index)
    by_id = {p.index: p.clip_id for p in plans}
    failed = []
    for result in results:
        for reason in result.replaced:
            log.warning("%s: replaced %s", by_id[result.index], reason)
        if result.entry is None:
            failed.append(f"{by_id[result.index]}: {result.error}")
            log.error("%s: failed: %s", by_id[result.index], result.error)
    entries = tuple(r.entry for r in results if r.entry is not None)
    index_text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    index_path = root / INDEX_NAME
    if not index_path.is_file() or index_path.read_text(encoding="utf-8") != index_text:  # keep mtimes on a no-op
        atomic_write_text(index_path, index_text)
    rendered = [r for r in results if r.rendered]
    return CorpusSummary(
        root=root, planned=len(plans), rendered=len(rendered), skipped=sum(1 for r in results if r.entry and not r.rendered),
        replaced=sum(1 for r in results if r.replaced and r.entry), failed=tuple(failed), entries=entries,
        wall_seconds=time.perf_counter() - started, render_seconds=sum(r.seconds for r in rendered),
    )


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """The clips listed in ``root/index.jsonl``."""
    path = Path(root) / INDEX_NAME
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
