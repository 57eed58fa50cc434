"""Stem files next to the shards: ``OUT/stems/<track_id>.flac``, written atomically and tagged.

The shard row holds the stem's path relative to ``OUT`` (so the folder can move). Each FLAC file
also carries, in its ``comment`` tag, the separator label that made it ("hpss", "demucs/htdemucs"),
so a stem found on its own still says what it is. A track that fails leaves no stem behind: the
stem is written last, and :func:`prune_orphan_stems` removes files no shard row refers to (left by
a killed task, or by an earlier run whose track now fails).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from pipeline.atomic import TEMP_MARKER, atomic_path, remove_stale_temp_files
from pipeline.store import list_shards
from stages.drums.constants import STEM_FORMAT, STEM_SUBTYPE, STEM_SUFFIX, STEMS_DIRNAME

log = logging.getLogger(__name__)

#: Name of the shard column holding the stem path (relative to the stage folder).
STEM_COLUMN = "stem_path"
#: Software tag written into every stem file.
STEM_SOFTWARE = "chordflow drums stage"


def stem_relpath(track_id: str) -> str:
    return f"{STEMS_DIRNAME}/{track_id}{STEM_SUFFIX}"


def write_stem(out_dir: str | Path, track_id: str, stem: np.ndarray, sr: int, label: str) -> str:
    """Write ``stem`` (C, N) float in [-1, 1] as 16-bit FLAC, atomically; returns the relative path."""
    relative = stem_relpath(track_id)
    frames = np.ascontiguousarray(np.clip(stem, -1.0, 1.0).T, dtype=np.float32)
    with atomic_path(Path(out_dir) / relative) as tmp:
        # the temp name does not end in .flac, so the format is given explicitly
        with sf.SoundFile(tmp, "w", samplerate=sr, channels=frames.shape[1], format=STEM_FORMAT,
                          subtype=STEM_SUBTYPE) as handle:
            handle.comment = label  # FLAC metadata precedes the audio: set tags before writing
            handle.software = STEM_SOFTWARE
            handle.write(frames)
    return relative


def read_stem(out_dir: str | Path, relative: str) -> tuple[np.ndarray, int]:
    """Read a stem written by :func:`write_stem` -> ((C, N) float32, sample rate)."""
    data, sr = sf.read(Path(out_dir) / relative, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), sr


def stem_label(path: str | Path) -> str:
    """The separator label stored in a stem file ("" if it has none)."""
    with sf.SoundFile(path) as handle:
        return handle.comment or ""


def referenced_stems(out_dir: str | Path) -> dict[Path, list[str]]:
    """shard path -> the stem paths its rows refer to (unreadable shards are left out: the runner
    recomputes them anyway)."""
    found = {}
    for shard in list_shards(out_dir):
        try:
            found[shard] = [str(p) for p in pq.read_table(shard, columns=[STEM_COLUMN]).column(STEM_COLUMN).to_pylist()]
        except (OSError, KeyError, pa.ArrowException) as exc:
            log.warning("%s: unreadable (%s); its stems count as unreferenced", shard, exc)
    return found


def shards_missing_stems(out_dir: str | Path) -> list[Path]:
    """Shards that refer to at least one stem file that is not there (deleted by hand, say)."""
    out_dir = Path(out_dir)
    return [shard for shard, stems in referenced_stems(out_dir).items()
            if any(not (out_dir / stem).is_file() for stem in stems)]


def remove_shards_missing_stems(out_dir: str | Path) -> list[Path]:
    """Delete shards whose stems are gone, so that the next run recomputes them."""
    removed = shards_missing_stems(out_dir)
    for shard in removed:
        log.warning("%s refers to missing stem files: removing it so that it is recomputed", shard)
        shard.unlink()
    return removed


def prune_orphan_stems(out_dir: str | Path) -> int:
    """Remove stem files (and dead writers' temp files) that no shard refers to; returns the count."""
    out_dir = Path(out_dir)
    folder = out_dir / STEMS_DIRNAME
    if not folder.is_dir():
        return 0
    removed = remove_stale_temp_files(folder)
    wanted = {(out_dir / stem).resolve() for stems in referenced_stems(out_dir).values() for stem in stems}
    for path in folder.iterdir():
        if path.is_file() and path.suffix == STEM_SUFFIX and TEMP_MARKER not in path.name and path.resolve() not in wanted:
            log.info("removing orphan stem %s (no shard row refers to it)", path)
            path.unlink()
            removed += 1
    return removed
