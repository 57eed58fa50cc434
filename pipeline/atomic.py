"""Atomic file writes: write to a hidden temp file in the same folder, fsync, then rename.

A reader therefore sees either the old file, or the complete new one, never a partial file, even
if the writer is killed with SIGKILL. Leftover temp files from killed writers are hidden (dot
prefix) and removed by :func:`remove_stale_temp_files`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

TEMP_MARKER = ".tmp-"


def temp_path_for(final: Path) -> Path:
    """A unique hidden sibling of ``final`` (same filesystem, so rename is atomic)."""
    return final.with_name(f".{final.name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class WriteError(OSError):
    """Writing a file failed (disk full, read-only folder, ...); the message names the file.

    Writers such as pyarrow report "No space left on device" without the file name, which is
    useless in a run that writes hundreds of shards. ``errno`` is the original one (or None).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __reduce__(self):  # keep errno when sent back from a worker process
        return (type(self), (str(self), self.errno))


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it is fsynced and renamed onto ``final``.

    On any exception the temp file is removed and ``final`` is left untouched; an ``OSError``
    comes out as :class:`WriteError` naming ``final``.
    """
    final = Path(final)
    tmp = temp_path_for(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(f"cannot write {final}: {exc.strerror or exc}", exc.errno) from exc
    finally:
        with contextlib.suppress(OSError):  # also when the folder is read-only or gone
            tmp.unlink()


def atomic_write_bytes(final: str | Path, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_write_text(final: str | Path, text: str) -> Path:
    return atomic_write_bytes(final, text.encode("utf-8"))


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temp files left by killed writers in ``folder``; returns how many were removed."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.name.startswith(".") and TEMP_MARKER in entry.name and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


def save_png(fig, out: str | Path, dpi: int | None = None) -> Path:
    """Write a matplotlib figure to ``out`` as PNG atomically, then close it (figures hold memory)."""
    import matplotlib.pyplot as plt  # imported here: only plotting commands need matplotlib

    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return out
