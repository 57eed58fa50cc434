"""``chordflow manifest``: one Parquet row per usable track, plus a table of rejected files.

::

    chordflow manifest --input data/audio data/more.txt data/train.jsonl \\
        --out manifests/train.parquet [--workers 2] [--root data]

Folders are scanned for every file that is not hidden (audio is recognised by content, not by
extension; the hidden entries skipped are counted in the summary). Every input path is sniffed
(first bytes: images, text and the like are rejected at once), then probed (header plus a short
decode at each end, see :func:`pipeline.audio.probe_audio`), stat'ed and hashed, in a small
process pool. Files that fail go to ``<name>.rejects.parquet`` with a reason and an
``error_type`` code; names that are not valid UTF-8 are rejected as ``bad_file_name`` without
being opened; files whose content duplicates an earlier one (in path order) are rejected as
``duplicate``. The run never stops on a bad file. The same inputs give a byte-identical manifest
(rows sorted by path, no timestamps in the metadata, worker count not recorded), so DVC sees no
change when nothing changed.
Track ids are described in :mod:`pipeline.manifest_scan`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.audio import AUDIO_ERROR_TYPES
from pipeline.config import ConfigError, DEFAULT_PARAMS_PATH, load_section
from pipeline.constants import METADATA_PREFIX
from pipeline.manifest_pool import map_isolated
from pipeline.manifest_scan import (
    BAD_FILE_NAME,
    UNEXPECTED,
    Candidate,
    ManifestInputError,
    bad_name_reject,
    default_root,
    describe_file,
    discover,
    is_utf8_name,
    make_track_id,
    printable_path,
)

logger = logging.getLogger(__name__)

MANIFEST_SCHEMA = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("duration", pa.float64(), nullable=False),  # seconds
    pa.field("frames", pa.int64(), nullable=False),  # samples per channel
    pa.field("sample_rate", pa.int32(), nullable=False),
    pa.field("channels", pa.int32(), nullable=False),
    pa.field("codec", pa.string(), nullable=False),
    pa.field("container", pa.string(), nullable=False),
    pa.field("size", pa.int64(), nullable=False),  # bytes
    pa.field("mtime", pa.float64(), nullable=False),  # seconds since the epoch
    pa.field("content_hash", pa.string(), nullable=False),  # sha256 hex of the file bytes
])
#: Columns of every error table in the project; later stages add ``stage`` and ``track_id``.
REJECTS_SCHEMA = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),  # human readable
    pa.field("error_type", pa.string(), nullable=False),  # short code: corrupt, truncated, ...
])
REJECT_COLUMNS: tuple[str, ...] = tuple(REJECTS_SCHEMA.names)

#: Error types added by the manifest on top of :data:`pipeline.audio.AUDIO_ERROR_TYPES`.
DUPLICATE = "duplicate"
DUPLICATE_ID = "duplicate_id"
CRASHED = "crashed"
#: Every ``error_type`` a manifest rejects table can hold.
REJECT_ERROR_TYPES: frozenset[str] = AUDIO_ERROR_TYPES | {DUPLICATE, DUPLICATE_ID, CRASHED, UNEXPECTED,
                                                          BAD_FILE_NAME}
MANIFEST_KIND = "manifest"
REJECTS_KIND = "manifest_rejects"
MANIFEST_FORMAT_VERSION = "1"
REJECTS_SUFFIX = ".rejects.parquet"
#: Rejects-table metadata key with scan counts that are not rows (hidden entries skipped).
SCAN_STATS_KEY = f"{METADATA_PREFIX}scan"
#: Largest difference (s) between a JSONL list's ``duration`` and the file before a warning.
JSONL_DURATION_TOLERANCE_S = 0.5
#: Most worker processes chosen automatically (the work is I/O and decoder bound).
MAX_AUTO_WORKERS = 4


class ManifestError(ValueError):
    """A manifest file that is missing or not a manifest."""


@dataclasses.dataclass(frozen=True)
class ManifestConfig:
    """``params.yaml`` section ``manifest``."""

    workers: int | None = None  # None: min(4, usable CPUs); <= 1: in this process
    root: str | None = None  # track ids are relative to this folder (None: common input root)


def default_workers() -> int:
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


def build_manifest(
    inputs: Sequence[str | os.PathLike],
    workers: int | None = None,
    root: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[pa.Table, pa.Table]:
    """Describe every track named by ``inputs``; returns ``(manifest, rejects)`` tables.

    Every file found ends up in exactly one of the two tables (hidden entries skipped by folder
    scans are only counted, in the rejects table's metadata, see :func:`hidden_skipped`).
    Raises :class:`ManifestInputError` only for an input argument that does not exist or a list
    that cannot be parsed; problems with individual files become rejects.
    """
    workers = default_workers() if workers is None else workers
    discovery = discover(inputs)
    candidates = _unique_by_path(discovery.candidates)
    id_root = os.fspath(root) if root is not None else default_root(candidates)
    # Bad names are rejected before any work: they could not be stored in the tables anyway.
    rejects = [bad_name_reject(c) for c in candidates if not is_utf8_name(c.path)]
    candidates = [c for c in candidates if is_utf8_name(c.path)]
    paths = [c.path for c in candidates]
    with tqdm(total=len(paths), desc="manifest", unit="file", disable=not progress) as bar:
        outcomes = map_isolated(describe_file, paths, workers, _crashed, bar)

    rows = []
    kept_by_hash: dict[str, str] = {}
    kept_by_id: dict[str, str] = {}
    for candidate, (ok, fields) in zip(candidates, outcomes):
        if not ok:
            rejects.append({"path": candidate.path, **fields})
            continue
        track_id = make_track_id(candidate.path, id_root)
        if fields["content_hash"] in kept_by_hash:
            kept = kept_by_hash[fields["content_hash"]]
            rejects.append({"path": candidate.path, "reason": f"duplicate content of {kept}", "error_type": DUPLICATE})
            continue
        if track_id in kept_by_id:
            kept = kept_by_id[track_id]
            rejects.append({"path": candidate.path, "reason": f"track id {track_id} already used by {kept}",
                            "error_type": DUPLICATE_ID})
            continue
        kept_by_hash[fields["content_hash"]] = kept_by_id[track_id] = candidate.path
        _check_listed_values(candidate, fields)
        rows.append({"track_id": track_id, "path": candidate.path, **fields})

    params = {"inputs": [os.fspath(i) for i in inputs], "root": None if root is None else os.fspath(root)}
    manifest = pa.Table.from_pylist(rows, schema=_with_metadata(MANIFEST_SCHEMA, MANIFEST_KIND, params))
    # A reason may quote a name that is not UTF-8 (e.g. a dangling symlink's target)
    rejects = sorted(({key: printable_path(value) for key, value in row.items()} for row in rejects),
                     key=lambda r: (r["path"], r["error_type"]))
    rejects_schema = _with_metadata(REJECTS_SCHEMA, REJECTS_KIND, params,
                                    {SCAN_STATS_KEY: json.dumps({"hidden_skipped": discovery.hidden_skipped})})
    return manifest, pa.Table.from_pylist(rejects, schema=rejects_schema)


def write_manifest(table: pa.Table, rejects: pa.Table, out_path: str | os.PathLike) -> None:
    """Write ``out_path`` and ``<name>.rejects.parquet`` beside it, each atomically.

    The rejects are written first, so a complete manifest always has its rejects next to it.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".parquet":
        raise ValueError(f"{out_path}: the manifest file name must end with .parquet")
    for data, final in ((rejects, rejects_path(out_path)), (table, out_path)):
        with atomic_path(final) as tmp:
            pq.write_table(data, tmp, compression="zstd")


def read_manifest(path: str | os.PathLike) -> pa.Table:
    """Read and validate a manifest written by :func:`write_manifest`."""
    table = _read_kind(Path(path), MANIFEST_KIND)
    missing = [f.name for f in MANIFEST_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
    return table


def read_rejects(path: str | os.PathLike) -> pa.Table:
    """Read the rejects table that belongs to manifest ``path`` (or a rejects file itself)."""
    path = Path(path)
    return _read_kind(path if path.name.endswith(REJECTS_SUFFIX) else rejects_path(path), REJECTS_KIND)


def rejects_path(manifest_path: str | os.PathLike) -> Path:
    """``manifests/x.parquet`` -> ``manifests/x.rejects.parquet``."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(manifest_path.name.removesuffix(".parquet") + REJECTS_SUFFIX)


def hidden_skipped(rejects: pa.Table) -> int:
    """Hidden entries (dot-files, dot-folders) that folder scans skipped, from the metadata."""
    raw = (rejects.schema.metadata or {}).get(SCAN_STATS_KEY.encode())
    return int(json.loads(raw).get("hidden_skipped", 0)) if raw else 0


def summarize(table: pa.Table, rejects: pa.Table) -> str:
    """One line whose numbers add up: files seen -> tracks (duration) + rejects by error type,
    then the hidden entries skipped (not files seen)."""
    hours = sum(table.column("duration").to_pylist()) / 3600.0
    seen = table.num_rows + rejects.num_rows
    text = f"{seen} files -> {table.num_rows} tracks ({hours:.2f} h), {rejects.num_rows} rejected"
    counts = collections.Counter(rejects.column("error_type").to_pylist())
    if counts:
        text += ": " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    hidden = hidden_skipped(rejects)
    if hidden:
        text += f"; {hidden} hidden entries skipped"
    return text


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manifest",
        help="list audio tracks (duration, rate, hash, ...) and reject unusable files",
        description="Write one Parquet row per usable audio track (duration, frames, rate, channels, codec, "
                    "container, size, mtime, sha256) and NAME.rejects.parquet with the reason for every "
                    "file that cannot be used. Same inputs, byte-identical output.",
    )
    parser.add_argument("--input", "-i", nargs="+", action="extend", required=True, metavar="DIR_OR_LIST",
                        help="folders, .txt/.lst lists, .jsonl lists or audio files (repeatable)")
    parser.add_argument("--out", "-o", required=True, help="output manifests/NAME.parquet")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"probe processes (default: params manifest.workers, else min({MAX_AUTO_WORKERS}, CPUs))")
    parser.add_argument("--root", default=None, metavar="DIR",
                        help="folder that track ids are relative to (default: common input root)")
    parser.add_argument("--params", default=None, help=f"parameter file (default: {DEFAULT_PARAMS_PATH} if present)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    try:
        config = _config_from(args.params)
        table, rejects = build_manifest(
            args.input,
            workers=args.workers if args.workers is not None else config.workers,
            root=args.root if args.root is not None else config.root,
            progress=not args.no_progress,
        )
        write_manifest(table, rejects, args.out)
    except (ManifestInputError, ConfigError, ValueError) as exc:
        print(f"chordflow manifest: error: {exc}", file=sys.stderr)
        return 2
    out, rejects_out = (printable_path(os.fspath(p)) for p in (args.out, rejects_path(args.out)))  # strict stdout
    print(f"manifest: {summarize(table, rejects)} -> {out} (rejects: {rejects_out})")
    return 0


def _config_from(params: str | None) -> ManifestConfig:
    if params is None and not DEFAULT_PARAMS_PATH.is_file():
        return ManifestConfig()
    return load_section(ManifestConfig, "manifest", params or DEFAULT_PARAMS_PATH)


def _unique_by_path(candidates: list[Candidate]) -> list[Candidate]:
    """Sort by path; a file named twice (e.g. by a folder and a list) is kept once."""
    unique: dict[str, Candidate] = {}
    for candidate in sorted(candidates, key=lambda c: c.path):
        key = os.path.abspath(candidate.path)
        if key in unique:
            logger.debug("%s: listed again by %s; kept once", printable_path(candidate.path),
                         printable_path(candidate.origin))
            continue
        unique[key] = candidate
    return list(unique.values())


def _crashed(path: str) -> tuple[bool, dict[str, Any]]:
    return False, {"reason": "decoding crashed the worker process (twice)", "error_type": CRASHED}


def _check_listed_values(candidate: Candidate, fields: dict[str, Any]) -> None:
    """Warn when a JSONL list's duration or sample_rate disagrees with the file."""
    for key, listed in candidate.expected:
        actual = fields[key]
        try:
            agrees = abs(float(listed) - actual) <= (JSONL_DURATION_TOLERANCE_S if key == "duration" else 0)
        except (TypeError, ValueError):
            agrees = False
        if not agrees:
            logger.warning("%s: list says %s=%r but %s has %r; the manifest keeps the file's value",
                           candidate.origin, key, listed, candidate.path, actual)


def _with_metadata(schema: pa.Schema, kind: str, params: dict[str, Any],
                   extra: dict[str, str] | None = None) -> pa.Schema:
    return schema.with_metadata({
        f"{METADATA_PREFIX}kind": kind,
        f"{METADATA_PREFIX}format_version": MANIFEST_FORMAT_VERSION,
        # ensure_ascii (the default) escapes a surrogate in an input path instead of failing
        f"{METADATA_PREFIX}params": json.dumps(params, sort_keys=True),
        **(extra or {}),
    })


def _read_kind(path: Path, kind: str) -> pa.Table:
    if not path.is_file():
        raise ManifestError(f"{path}: not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"{path}: not a readable Parquet file ({exc})") from exc
    metadata = table.schema.metadata or {}
    found = metadata.get(f"{METADATA_PREFIX}kind".encode(), b"").decode()
    if found != kind:
        raise ManifestError(f"{path}: expected a chordflow {kind} table, found kind {found or 'none'!r}")
    return table
