"""Find the tracks named by manifest inputs, and describe one track (the work done in parallel).

Inputs are folders (scanned recursively for audio extensions), plain-text lists (one path per
line, ``#`` comments), JSON-lines lists as AudioCraft/JASCO use (one object with a ``"path"`` per
line), or single audio files. Relative paths in a list are relative to the list's folder.

Track ids: ``<slug of the file stem>-<first 10 hex digits of sha1(path relative to the root)>``,
with the relative path in POSIX form. The root is ``--root`` if given, else the deepest folder
that contains every input's root (a scanned folder, a list file's folder, a single file's
folder). Ids therefore survive moving or cloning the data as long as the layout under the root
stays the same, and never depend on the machine, the working directory or absolute paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Sequence

from pipeline.audio import AudioError, probe_audio

#: Extensions picked up when scanning folders (lists may name files with any extension).
AUDIO_EXTENSIONS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "aif", "aiff")
#: Input files read as plain-text lists of paths.
TEXT_LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list")
#: Input files read as JSON-lines lists.
JSONL_SUFFIX = ".jsonl"
#: Hex digits of the path hash in a track id (40 bits; the slug makes collisions rarer still).
TRACK_ID_HASH_CHARS = 10
#: Longest file-stem slug kept in a track id.
TRACK_ID_SLUG_CHARS = 48
#: Bytes per read when hashing file contents.
HASH_CHUNK_BYTES = 1 << 20
#: Error type for a failure that no audio check anticipated (a bug, or a library surprise).
UNEXPECTED = "unexpected_error"


class ManifestInputError(ValueError):
    """An input argument that is neither a folder, a list file nor a file."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One path to describe, with the root its track id is relative to.

    ``expected`` holds the values a JSONL list claims (``duration``, ``sample_rate``) so they
    can be checked against the file.
    """

    path: str
    root: str
    origin: str
    expected: tuple[tuple[str, Any], ...] = ()


def discover(inputs: Sequence[str | os.PathLike], extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Candidate]:
    """Expand every input into candidates, in input order (duplicates are kept for the caller)."""
    suffixes = {"." + ext.lower().lstrip(".") for ext in extensions}
    candidates: list[Candidate] = []
    for raw in inputs:
        entry = os.path.normpath(os.fspath(raw))
        if os.path.isdir(entry):
            candidates += [Candidate(path, entry, entry) for path in scan_folder(entry, suffixes)]
        elif os.path.isfile(entry) and entry.lower().endswith(JSONL_SUFFIX):
            candidates += _read_jsonl_list(entry)
        elif os.path.isfile(entry) and entry.lower().endswith(TEXT_LIST_SUFFIXES):
            candidates += _read_text_list(entry)
        elif os.path.lexists(entry):
            candidates.append(Candidate(entry, os.path.dirname(entry) or ".", entry))
        else:
            raise ManifestInputError(f"{entry}: input not found (expected a folder, a list file or an audio file)")
    return candidates


def scan_folder(folder: str, suffixes: set[str]) -> list[str]:
    """Files under ``folder`` whose extension is in ``suffixes`` (case-insensitive), sorted.

    Symlinked folders are followed once each (a link cycle cannot loop forever); dangling
    symlinks with an audio extension are returned so that they are reported, not lost.
    """
    found: list[str] = []
    visited: set[str] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in visited:
            dirs.clear()
            continue
        visited.add(real)
        dirs.sort()
        found += [os.path.normpath(os.path.join(current, name)) for name in files
                  if os.path.splitext(name)[1].lower() in suffixes]
    return sorted(found)


def _read_text_list(list_file: str) -> list[Candidate]:
    base = os.path.dirname(list_file) or "."
    candidates = []
    for number, line in enumerate(_read_lines(list_file), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            candidates.append(Candidate(_resolve(base, text), base, f"{list_file}:{number}"))
    return candidates


def _read_jsonl_list(list_file: str) -> list[Candidate]:
    base = os.path.dirname(list_file) or "."
    candidates = []
    for number, line in enumerate(_read_lines(list_file), start=1):
        if not line.strip():
            continue
        where = f"{list_file}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestInputError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise ManifestInputError(f'{where}: each line must be a JSON object with a string "path"')
        expected = tuple((key, record[key]) for key in ("duration", "sample_rate") if key in record)
        candidates.append(Candidate(_resolve(base, record["path"]), base, where, expected))
    return candidates


def _read_lines(list_file: str) -> list[str]:
    try:
        return Path(list_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestInputError(f"{list_file}: cannot read list ({exc})") from None


def _resolve(base: str, entry: str) -> str:
    return os.path.normpath(entry if os.path.isabs(entry) else os.path.join(base, entry))


def default_root(candidates: Sequence[Candidate]) -> str:
    """Deepest folder containing every candidate's root (absolute), or the cwd if none."""
    roots = sorted({os.path.abspath(c.root) for c in candidates})
    return os.path.commonpath(roots) if roots else os.getcwd()


def make_track_id(path: str, root: str) -> str:
    """Stable id: slug of the stem + hash of the POSIX path relative to ``root``."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")
    digest = hashlib.sha1(relative.encode("utf-8")).hexdigest()[:TRACK_ID_HASH_CHARS]
    return f"{slugify(Path(path).stem)}-{digest}"


def slugify(text: str) -> str:
    """Lower-case ASCII letters, digits and single dashes (``"track"`` if nothing is left)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:TRACK_ID_SLUG_CHARS].strip("-")
    return slug or "track"


def describe_file(path: str) -> tuple[bool, dict[str, Any]]:
    """Probe, stat and hash one file; never raises.

    Returns ``(True, row fields)`` or ``(False, {"reason": ..., "error_type": ...})``.
    """
    try:
        info = probe_audio(path)
        stat = os.stat(path)
        content_hash = sha256_file(path)
    except AudioError as exc:
        return False, {"reason": exc.reason, "error_type": exc.error_type}
    except OSError as exc:
        return False, {"reason": f"unreadable: {exc.strerror or exc}", "error_type": "unreadable"}
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop the whole run
        return False, {"reason": f"{type(exc).__name__}: {exc}", "error_type": UNEXPECTED}
    return True, {
        "duration": info.duration,
        "frames": info.frames,
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "codec": info.codec,
        "container": info.container,
        "size": stat.st_size,
        "mtime": stat.st_mtime,
        "content_hash": content_hash,
    }


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
