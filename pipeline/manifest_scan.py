"""Find the tracks named by manifest inputs, and describe one track (the work done in parallel).

Inputs are folders (scanned recursively), plain-text lists (one path per line, ``#`` comments),
JSON-lines lists as AudioCraft/JASCO use (one object with a ``"path"`` per line), or single audio
files. Relative paths in a list are relative to the list's folder.

A folder scan takes every file whatever its extension, except hidden entries (names starting
with ``.``: ``.DS_Store``, ``.git/``, macOS ``._*`` resource forks), which are counted, not
listed. Whether a file is audio is decided by its content in :func:`describe_file`: a cheap
sniff of the first bytes rejects what is known not to be audio (images, text, archives, ...)
before the full probe, which only files that may be audio get.

File names must be valid UTF-8 (Parquet strings and the JSON exports downstream need it).
Linux allows any bytes; Python hands such names over with surrogate escapes, and they are
rejected as :data:`BAD_FILE_NAME` with a printable form of the name (:func:`printable_path`).
List files are read as bytes for the same reason, so one bad line rejects only its own entry.

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
import logging
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any, Sequence

from pipeline.audio import AudioError, probe_audio
from pipeline.audio_decode import CORRUPT, NOT_AUDIO, UNREADABLE
from pipeline.audio_sniff import Sniffed, sniff_file

logger = logging.getLogger(__name__)

#: Names starting with this are hidden entries, skipped (and counted) by folder scans.
HIDDEN_PREFIX = "."
#: A byte-order mark that some editors put at the start of UTF-8 text files.
UTF8_BOM = b"\xef\xbb\xbf"
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
#: Error type for a path that is not valid UTF-8.
BAD_FILE_NAME = "bad_file_name"
#: How to fix a bad name, appended to its reason.
RENAME_HINT = ("rename it to valid UTF-8, e.g. `convmv -r -f latin1 -t utf-8 --notest FOLDER` "
               "(with the encoding the names were written in)")
#: Containers that may hold video: a failed probe there may mean "video without audio".
VIDEO_CONTAINERS = frozenset({"mp4", "matroska", "avi", "asf"})
# Kinds of non-regular files, for the reason of their reject.
_SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class ManifestInputError(ValueError):
    """An input argument that is neither a folder, a list file nor a file."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One path to describe, with the root its track id is relative to.

    ``path`` is the file system path as Python gives it (surrogate escapes for bytes that are not
    UTF-8); ``origin`` is the input that named it (a folder, or ``list:line``). ``expected`` holds
    the values a JSONL list claims (``duration``, ``sample_rate``) so they can be checked.
    """

    path: str
    root: str
    origin: str
    expected: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass
class Discovery:
    """What the inputs name: candidates (duplicates kept) and the hidden entries skipped."""

    candidates: list[Candidate] = dataclasses.field(default_factory=list)
    hidden_skipped: int = 0


def discover(inputs: Sequence[str | os.PathLike]) -> Discovery:
    """Expand every input into candidates, in input order (duplicates are kept for the caller)."""
    found = Discovery()
    for raw in inputs:
        entry = os.path.normpath(os.fspath(raw))
        if os.path.isdir(entry):
            paths, hidden = scan_folder(entry)
            found.candidates += [Candidate(path, entry, entry) for path in paths]
            found.hidden_skipped += hidden
        elif os.path.isfile(entry) and entry.lower().endswith(JSONL_SUFFIX):
            found.candidates += _read_jsonl_list(entry)
        elif os.path.isfile(entry) and entry.lower().endswith(TEXT_LIST_SUFFIXES):
            found.candidates += _read_text_list(entry)
        elif os.path.lexists(entry):
            found.candidates.append(Candidate(entry, os.path.dirname(entry) or ".", entry))
        else:
            raise ManifestInputError(f"{printable_path(entry)}: input not found "
                                     "(expected a folder, a list file or an audio file)")
    return found


def scan_folder(folder: str) -> tuple[list[str], int]:
    """Every non-hidden file under ``folder``, sorted, and the number of hidden entries skipped.

    A hidden folder counts once (its contents are never walked). Symlinked folders are followed
    once each (a link cycle cannot loop forever); dangling symlinks and folders that cannot be
    listed are returned so that they are reported, not lost.
    """
    found: list[str] = []
    hidden = 0
    visited: set[str] = set()
    # A subfolder that cannot be listed is returned like a file, so that it is reported (as
    # unreadable, with the reason) instead of vanishing with everything in it.
    unlisted = lambda error: found.append(os.path.normpath(error.filename))  # noqa: E731
    for current, dirs, files in os.walk(folder, followlinks=True, onerror=unlisted):
        real = os.path.realpath(current)
        if real in visited:
            dirs.clear()
            continue
        visited.add(real)
        shown_dirs = sorted(name for name in dirs if not name.startswith(HIDDEN_PREFIX))
        shown_files = [name for name in files if not name.startswith(HIDDEN_PREFIX)]
        hidden += len(dirs) - len(shown_dirs) + len(files) - len(shown_files)
        dirs[:] = shown_dirs  # in place: os.walk descends only into these
        found += [os.path.normpath(os.path.join(current, name)) for name in shown_files]
    if hidden:
        logger.info("%s: skipped %d hidden entr%s (names starting with %r)", printable_path(folder),
                    hidden, "y" if hidden == 1 else "ies", HIDDEN_PREFIX)
    return sorted(found), hidden


def _read_text_list(list_file: str) -> list[Candidate]:
    base = os.path.dirname(list_file) or "."
    candidates = []
    for number, line in _read_lines(list_file):
        text = line.strip()
        if text and not text.startswith("#"):
            candidates.append(Candidate(_resolve(base, text), base, f"{list_file}:{number}"))
    return candidates


def _read_jsonl_list(list_file: str) -> list[Candidate]:
    base = os.path.dirname(list_file) or "."
    candidates = []
    for number, line in _read_lines(list_file):
        if not line.strip():
            continue
        where = f"{printable_path(list_file)}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestInputError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise ManifestInputError(f'{where}: each line must be a JSON object with a string "path"')
        if not is_utf8_name(line) and is_utf8_name(record["path"]):  # e.g. a Latin-1 description
            logger.warning("%s: bytes that are not UTF-8 outside \"path\"; the manifest uses only the path", where)
        expected = tuple((key, record[key]) for key in ("duration", "sample_rate") if key in record)
        candidates.append(Candidate(_resolve(base, record["path"]), base, f"{list_file}:{number}", expected))
    return candidates


def _read_lines(list_file: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of every line of a list, read as bytes.

    Bytes that are not UTF-8 become surrogate escapes, as in the names Python reads from the
    file system, so such a line names the very file it means and only that entry is rejected
    (as a bad file name) instead of the whole list.
    """
    try:
        data = Path(list_file).read_bytes().removeprefix(UTF8_BOM)
    except OSError as exc:
        raise ManifestInputError(f"{printable_path(list_file)}: cannot read list ({exc.strerror or exc})") from None
    return [(number, line.decode("utf-8", "surrogateescape"))
            for number, line in enumerate(data.splitlines(), start=1)]


def _resolve(base: str, entry: str) -> str:
    return os.path.normpath(entry if os.path.isabs(entry) else os.path.join(base, entry))


# ----------------------------------------------------------------------------- file names


def is_utf8_name(path: str) -> bool:
    """Whether ``path`` is valid Unicode without surrogates, i.e. encodes as UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_path(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes that are not UTF-8 become ``\\xNN`` escapes."""
    try:  # surrogateescape gives back the bytes the OS gave (os.fsencode on a UTF-8 system)
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte (e.g. "\ud800" from JSON)
        return path.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def bad_name_reject(candidate: Candidate) -> dict[str, str]:
    """The rejects row for a candidate whose path is not valid UTF-8."""
    shown = printable_path(candidate.path)
    folder, name = os.path.split(candidate.path)
    part = "the folder name" if is_utf8_name(name) else "the file name"
    from_list = candidate.origin not in (candidate.root, candidate.path)  # not a folder scan or a file argument
    listed = f" (listed at {printable_path(candidate.origin)})" if from_list else ""
    reason = f"{part} is not valid UTF-8: {shown}{listed}; {RENAME_HINT}"
    return {"path": shown, "reason": reason, "error_type": BAD_FILE_NAME}


def default_root(candidates: Sequence[Candidate]) -> str:
    """Deepest folder containing every candidate's root (absolute), or the cwd if none."""
    roots = sorted({os.path.abspath(c.root) for c in candidates})
    return os.path.commonpath(roots) if roots else os.getcwd()


def make_track_id(path: str, root: str) -> str:
    """Stable id: slug of the stem + hash of the POSIX path relative to ``root``."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")
    # surrogateescape: the same bytes as strict UTF-8 for every valid name, and no crash on others
    digest = hashlib.sha1(relative.encode("utf-8", "surrogateescape")).hexdigest()[:TRACK_ID_HASH_CHARS]
    return f"{slugify(Path(path).stem)}-{digest}"


def slugify(text: str) -> str:
    """Lower-case ASCII letters, digits and single dashes (``"track"`` if nothing is left)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:TRACK_ID_SLUG_CHARS].strip("-")
    return slug or "track"


# ----------------------------------------------------------------------------- one file


def describe_file(path: str) -> tuple[bool, dict[str, Any]]:
    """Sniff, probe, stat and hash one file; never raises.

    Returns ``(True, row fields)`` or ``(False, {"reason": ..., "error_type": ...})``. Content
    that the sniff knows is not audio is rejected without starting a decoder.
    """
    sniffed = None
    try:
        sniffed, early = _precheck(path)
        if early is not None:
            return False, early
        info = probe_audio(path)
        status = os.stat(path)
        content_hash = sha256_file(path)
    except AudioError as exc:
        return False, _audio_failure(path, sniffed, exc)
    except OSError as exc:
        return False, {"reason": f"unreadable: {exc.strerror or exc}", "error_type": UNREADABLE}
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop the whole run
        return False, {"reason": f"{type(exc).__name__}: {exc}", "error_type": UNEXPECTED}
    return True, {
        "duration": info.duration,
        "frames": info.frames,
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "codec": info.codec,
        "container": info.container,
        "size": status.st_size,
        "mtime": status.st_mtime,
        "content_hash": content_hash,
    }


def _precheck(path: str) -> tuple[Sniffed | None, dict[str, str] | None]:
    """``(sniffed header or None, reject fields or None)`` from a stat and a header read.

    Missing, dangling and unreadable paths pass through: the probe names their exact problem.
    A pipe or device is rejected here because opening one could block forever.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None, None
    for is_kind, kind in _SPECIAL_FILES:
        if is_kind(mode):
            return None, {"reason": f"unreadable: not a regular file ({kind})", "error_type": UNREADABLE}
    if not stat.S_ISREG(mode):
        return None, None
    try:
        sniffed = sniff_file(path)
    except OSError:
        return None, None
    if sniffed.looks_like is not None:
        return sniffed, {"reason": f"not an audio file: the content is {sniffed.looks_like}", "error_type": NOT_AUDIO}
    return sniffed, None


def _audio_failure(path: str, sniffed: Sniffed | None, exc: AudioError) -> dict[str, str]:
    """Reject fields for a failed probe; a video container without audio says so."""
    container = sniffed.container if sniffed is not None else None
    if exc.error_type == CORRUPT and container in VIDEO_CONTAINERS and _is_video_without_audio(path):
        return {"reason": f"not an audio file: a video ({container}) without an audio stream", "error_type": NOT_AUDIO}
    return {"reason": exc.reason, "error_type": exc.error_type}


def _is_video_without_audio(path: str) -> bool:
    """Whether FFmpeg finds a video stream and no audio stream (False if it cannot tell)."""
    try:  # the probe that just failed has imported torchcodec already
        from torchcodec import _core as core

        metadata = core.get_container_metadata(core.create_from_file(path))
    except Exception:  # noqa: BLE001 - only refines a reason: any failure keeps the original one
        return False
    return metadata.best_video_stream_index is not None and metadata.best_audio_stream_index is None


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
