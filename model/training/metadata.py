"""Per-track split and text description, from a JSONL file beside the manifest.

Each line names a track by ``track_id`` or by ``path`` (as written in the manifest, or any path
that resolves to the same file) and gives ``split`` (train / valid / test) and ``description``.
``chordflow corpus metadata`` writes this file for the demo corpus; users write their own.
Tracks without a line default to split ``train`` and no description.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.manifest import read_manifest

SPLITS: tuple[str, ...] = ("train", "valid", "test")


class MetadataError(ValueError):
    """A metadata line cannot be read or names no track of the manifest."""


@dataclass(frozen=True)
class TrackMeta:
    track_id: str
    path: str
    duration: float = 0.0
    split: str = "train"
    description: str | None = None


def _key(path: str) -> str:
    return os.path.realpath(path)


def load_track_metadata(manifest_path: str | Path, metadata_path: str | Path | None) -> dict[str, TrackMeta]:
    """track_id -> :class:`TrackMeta` for every track of the manifest."""
    table = read_manifest(manifest_path)
    ids, paths = table.column("track_id").to_pylist(), table.column("path").to_pylist()
    durations = table.column("duration").to_pylist()
    by_path = {_key(p): tid for tid, p in zip(ids, paths)}
    known = set(ids)
    entries: dict[str, dict] = {}
    if metadata_path is not None:
        metadata_path = Path(metadata_path)
        if not metadata_path.is_file():
            raise MetadataError(f"{metadata_path}: metadata file not found")
        for number, line in enumerate(metadata_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MetadataError(f"{metadata_path}:{number}: not JSON ({exc.msg})") from None
            tid = row.get("track_id")
            if tid is None and row.get("path") is not None:
                tid = by_path.get(_key(row["path"]))
            if tid is None or tid not in known:
                continue  # a line for a track outside this manifest (e.g. rejected) is not an error
            split = row.get("split", "train")
            if split not in SPLITS:
                raise MetadataError(f"{metadata_path}:{number}: split {split!r} is not one of {SPLITS}")
            entries[tid] = {"split": split, "description": row.get("description") or None}
    return {tid: TrackMeta(track_id=tid, path=p, duration=float(d), **entries.get(tid, {}))
            for tid, p, d in zip(ids, paths, durations)}


def tracks_of(metadata: dict[str, TrackMeta], splits: str | tuple[str, ...]) -> list[str]:
    """Sorted track ids whose split is one of ``splits``."""
    wanted = (splits,) if isinstance(splits, str) else tuple(splits)
    return sorted(tid for tid, meta in metadata.items() if meta.split in wanted)


def write_corpus_metadata(corpus: str | Path, out: str | Path) -> int:
    """The demo corpus's metadata: one line per clip (``path`` as the manifest names it, ``split``,
    ``description`` from its truth file); returns the number of lines."""
    from pipeline.atomic import atomic_write_text
    from pipeline.corpus.build import read_index

    root = Path(corpus)
    lines = []
    for entry in read_index(root):
        truth = json.loads((root / entry["truth"]).read_text(encoding="utf-8"))
        lines.append(json.dumps({"path": str(root / entry["audio"]), "clip_id": entry["clip_id"],
                                 "split": entry["split"], "description": truth.get("description")}, sort_keys=True))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines)
