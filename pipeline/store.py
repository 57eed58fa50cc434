"""The shard store: one atomic Parquet file per shard, self-describing, resumable.

A stage writes ``OUT/shard-00000.parquet``, ``OUT/shard-00001.parquet``, ... Each file holds one
row per successfully processed track (``track_id``, ``path`` and one column per feature) and
records in its Parquet schema metadata what made it: stage name and version, params hash, frame
rate, feature shapes, the planned track list and the per-track errors. A shard is *complete* when
that metadata matches what the current run would write, so a re-run skips it; files are written
with temp + rename, so a killed writer never leaves a partial shard under the final name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.arrays import ColumnView, arrow_type, build_column
from pipeline.atomic import atomic_path
from pipeline.constants import METADATA_PREFIX, SHARD_FORMAT_VERSION
from pipeline.stage import FeatureSpec

SHARD_PATTERN = re.compile(r"^shard-(\d{5,})\.parquet$")
ERROR_COLUMNS = ("stage", "shard", "track_id", "path", "error_type", "reason")
_PARQUET_COMPRESSION = "zstd"


def shard_filename(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def track_ids_digest(track_ids: Sequence[str]) -> str:
    """Digest of a shard's planned track list (order matters)."""
    return hashlib.sha256("\n".join(track_ids).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class StageInfo:
    """What a shard records about the stage that made it."""

    stage: str
    version: str
    params_hash: str
    features: tuple[FeatureSpec, ...]
    params: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def frame_rate(self) -> float | None:
        """The frame rate shared by the time-aligned features (None if there are none)."""
        rates = {f.frame_rate for f in self.features if f.frame_rate is not None}
        if len(rates) > 1:
            raise ValueError(f"stage {self.stage}: features disagree on frame rate {sorted(rates)}")
        return rates.pop() if rates else None


@dataclasses.dataclass(frozen=True)
class TrackError:
    track_id: str
    path: str
    error_type: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ShardMeta:
    info: StageInfo
    shard: int
    track_ids_digest: str
    planned: int
    errors: tuple[TrackError, ...]
    format_version: int


def _encode_metadata(info: StageInfo, shard: int, planned: Sequence[str], errors: Sequence[TrackError]) -> dict[bytes, bytes]:
    fields = {
        "format_version": SHARD_FORMAT_VERSION,
        "stage": info.stage,
        "stage_version": info.version,
        "params_hash": info.params_hash,
        "params": info.params,
        "frame_rate": info.frame_rate,
        "features": [{"name": f.name, **f.to_json()} for f in info.features],  # a list keeps order
        "shard": shard,
        "planned_tracks": len(planned),
        "track_ids_digest": track_ids_digest(planned),
        "errors": [dataclasses.asdict(e) for e in errors],
    }
    return {
        f"{METADATA_PREFIX}{key}".encode(): json.dumps(value, sort_keys=True, default=str).encode()
        for key, value in fields.items()
    }


def decode_metadata(metadata: dict[bytes, bytes] | None) -> ShardMeta:
    """Parse chordflow's schema metadata; raises ValueError if it is missing or malformed."""
    if not metadata:
        raise ValueError("no chordflow metadata")
    raw = {
        key.decode()[len(METADATA_PREFIX):]: json.loads(value)
        for key, value in metadata.items()
        if key.decode(errors="replace").startswith(METADATA_PREFIX)
    }
    try:
        features = tuple(
            FeatureSpec(spec["name"], spec["dtype"], tuple(spec["shape"]), spec["frame_rate"])
            for spec in raw["features"]
        )
        info = StageInfo(raw["stage"], raw["stage_version"], raw["params_hash"], features, raw.get("params", {}))
        return ShardMeta(
            info=info,
            shard=int(raw["shard"]),
            track_ids_digest=raw["track_ids_digest"],
            planned=int(raw["planned_tracks"]),
            errors=tuple(TrackError(**e) for e in raw["errors"]),
            format_version=int(raw["format_version"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed chordflow metadata: {exc}") from exc


def write_shard(
    out_dir: str | Path,
    shard: int,
    info: StageInfo,
    planned_track_ids: Sequence[str],
    rows: Sequence[dict[str, Any]],
    errors: Sequence[TrackError] = (),
) -> Path:
    """Atomically write one shard.

    Args:
        planned_track_ids: every track the plan put in this shard (good and failed), in order.
        rows: one dict per good track with ``track_id``, ``path`` and every feature, values
            already coerced with :func:`pipeline.arrays.coerce_value`.
        errors: one entry per failed track.
    """
    columns = {
        "track_id": pa.array([r["track_id"] for r in rows], type=pa.string()),
        "path": pa.array([r["path"] for r in rows], type=pa.string()),
    }
    for spec in info.features:
        columns[spec.name] = build_column(spec, [r[spec.name] for r in rows])
    schema = pa.schema(
        [pa.field("track_id", pa.string()), pa.field("path", pa.string())]
        + [pa.field(spec.name, arrow_type(spec)) for spec in info.features],
        metadata=_encode_metadata(info, shard, planned_track_ids, errors),
    )
    table = pa.Table.from_arrays(list(columns.values()), schema=schema)
    final = Path(out_dir) / shard_filename(shard)
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression=_PARQUET_COMPRESSION, row_group_size=max(len(rows), 1))
    return final


def read_shard_meta(path: str | Path) -> ShardMeta:
    """Read only the footer of a shard (cheap). Raises ValueError for a corrupt or foreign file."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: unreadable shard: {exc}") from exc
    return decode_metadata(schema.metadata)


def shard_is_complete(path: str | Path, info: StageInfo, planned_track_ids: Sequence[str]) -> bool:
    """True when ``path`` is a valid shard written by the same stage/version/params for this plan."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        meta = read_shard_meta(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except (ValueError, OSError, pa.ArrowException):
        return False
    return (
        meta.format_version == SHARD_FORMAT_VERSION
        and meta.info.stage == info.stage
        and meta.info.version == info.version
        and meta.info.params_hash == info.params_hash
        and meta.track_ids_digest == track_ids_digest(planned_track_ids)
        and rows + len(meta.errors) == len(planned_track_ids)
    )


class ShardReader:
    """One shard in memory (memory-mapped), with zero-copy numpy views per track."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.table = pq.read_table(self.path, memory_map=True)
        self.meta = decode_metadata(self.table.schema.metadata)
        self.track_ids: list[str] = self.table.column("track_id").to_pylist()
        self._row_of = {tid: i for i, tid in enumerate(self.track_ids)}
        self._views = {
            spec.name: ColumnView(spec, self.table.column(spec.name)) for spec in self.meta.info.features
        }
        self._paths = self.table.column("path").to_pylist()

    def __len__(self) -> int:
        return len(self.track_ids)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._row_of

    def get(self, track_id: str) -> dict[str, Any]:
        """All features of one track: numpy views for arrays, Python values for scalars/json."""
        row = self._row_of[track_id]
        out: dict[str, Any] = {"track_id": track_id, "path": self._paths[row]}
        out.update({name: view[row] for name, view in self._views.items()})
        return out


def list_shards(out_dir: str | Path) -> list[Path]:
    """Shard files in ``out_dir`` sorted by index (temp files and other files are ignored)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [p for p in out_dir.iterdir() if SHARD_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(SHARD_PATTERN.match(p.name).group(1)))
