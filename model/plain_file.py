"""Reading a torch file as plain data: ``torch.load(weights_only=True)``, each failure said plainly.

Chordflow checkpoints and released JASCO state dicts are both read here; a file carrying code or
objects other than plain data and tensors (a pickled callable runs when unpickled) is refused,
never executed.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch


class PlainFileError(ValueError):
    """A file cannot be read as plain data and tensors (missing, damaged, or carrying code)."""


class RefusedFileError(PlainFileError):
    """The file carries code or objects, which are never unpickled."""


def read_plain_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of ``path``; :class:`PlainFileError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PlainFileError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise PlainFileError(f"{path}: cannot read checkpoint (not a file written by torch.save, or truncated)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RefusedFileError(f"{path}: refused: the file carries code or objects other than plain data and "
                               f"tensors{_refused_global(exc)}, which chordflow never unpickles (it could run "
                               "anything)") from None
    except Exception as exc:  # torch raises several types for damaged archives
        raise PlainFileError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc


def _refused_global(exc: Exception) -> str:
    """`` (it names module.attr)`` from torch's weights-only message, when it says which global."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    return f" (it names {found.group(1)})" if found else ""
