"""Read a stage's output folder as one table, and join several stages by ``track_id``.

``StageStore`` indexes every shard of one stage (opened lazily, memory-mapped) and checks that all
shards were made by the same stage/version/params; :meth:`StageStore.config` reads those params back
as the stage's frozen config. ``join_stages`` puts several stores side by side and checks that they
are compatible (frame rates of time-aligned features agree, the track sets overlap), returning
per-track dicts of numpy views.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Mapping, TypeVar

import pyarrow as pa

from pipeline.config import load_config
from pipeline.store import ERROR_COLUMNS, ShardMeta, ShardReader, StageInfo, list_shards, read_shard_meta


T = TypeVar("T")


class StoreError(ValueError):
    """A stage folder is missing, empty, mixed, or incompatible with another stage."""


class StageStore:
    """All shards of one stage output folder."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.shard_paths = list_shards(self.out_dir)
        if not self.shard_paths:
            raise StoreError(f"{self.out_dir}: no shards found (has the stage run?)")
        self.metas: list[ShardMeta] = []
        for path in self.shard_paths:
            try:
                self.metas.append(read_shard_meta(path))
            except ValueError as exc:
                raise StoreError(str(exc)) from exc
        first = self.metas[0].info
        for path, meta in zip(self.shard_paths, self.metas):
            if (meta.info.stage, meta.info.version, meta.info.params_hash) != (first.stage, first.version, first.params_hash):
                raise StoreError(
                    f"{path}: made by {meta.info.stage} v{meta.info.version} params {meta.info.params_hash}, "
                    f"but {self.shard_paths[0].name} by {first.stage} v{first.version} params {first.params_hash}; "
                    "re-run the stage so the folder is consistent"
                )
        self.info: StageInfo = first
        self._readers: dict[int, ShardReader] = {}
        self._shard_of: dict[str, int] | None = None

    @property
    def stage(self) -> str:
        return self.info.stage

    @property
    def frame_rate(self) -> float | None:
        return self.info.frame_rate

    def config(self, cls: type[T]) -> T:
        """The stage params the shards record, parsed as the frozen config ``cls`` (e.g. ``ChordsConfig``).

        Strict like ``params.yaml``: a key ``cls`` lacks (another stage's folder, shards of another
        version) raises :class:`StoreError` naming the folder, never a silently defaulted setting."""
        try:
            return load_config(cls, self.info.params, where=f"{self.out_dir} ({self.stage} params)")
        except ValueError as exc:  # ConfigError, or a config's own check in __post_init__
            raise StoreError(f"{exc} (the params recorded in the shards do not parse as {cls.__name__})") from exc

    def _reader(self, index: int) -> ShardReader:
        if index not in self._readers:
            self._readers[index] = ShardReader(self.shard_paths[index])
        return self._readers[index]

    def _index(self) -> dict[str, int]:
        if self._shard_of is None:
            self._shard_of = {}
            for i in range(len(self.shard_paths)):
                for track_id in self._reader(i).track_ids:
                    self._shard_of[track_id] = i
        return self._shard_of

    def track_ids(self) -> list[str]:
        return sorted(self._index())

    def shard_of(self, track_id: str) -> int:
        """Index (into ``shard_paths``) of the shard holding ``track_id``; KeyError naming the folder."""
        try:
            return self._index()[track_id]
        except KeyError:
            raise KeyError(f"{self.out_dir}: no track {track_id!r}") from None

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._index()

    def __len__(self) -> int:
        return len(self._index())

    def get(self, track_id: str) -> dict[str, Any]:
        shard = self.shard_of(track_id)
        return self._reader(shard).get(track_id)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self.shard_paths)):
            reader = self._reader(i)
            for track_id in reader.track_ids:
                yield reader.get(track_id)

    def errors(self) -> pa.Table:
        """Every per-track error recorded in the shards, as a table with :data:`ERROR_COLUMNS`."""
        rows = [
            {"stage": meta.info.stage, "shard": meta.shard, **dataclasses.asdict(err)}
            for meta in self.metas
            for err in meta.errors
        ]
        return pa.Table.from_pylist(rows, schema=error_schema())


def error_schema() -> pa.Schema:
    types = {"shard": pa.int32()}
    return pa.schema([pa.field(name, types.get(name, pa.string())) for name in ERROR_COLUMNS])


@dataclasses.dataclass
class JoinedStages:
    """Several stages joined on ``track_id``: ``get(tid) -> {stage: {feature: value}}``."""

    stores: dict[str, StageStore]
    track_ids: list[str]
    missing: dict[str, list[str]]  # stage -> track ids present in another stage but not in it

    def get(self, track_id: str) -> dict[str, dict[str, Any]]:
        return {name: store.get(track_id) for name, store in self.stores.items()}

    def __iter__(self) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
        for track_id in self.track_ids:
            yield track_id, self.get(track_id)


def join_stages(
    folders: Mapping[str, str | Path],
    frame_rate: float | None = None,
    require_all: bool = False,
) -> JoinedStages:
    """Open each stage folder and join them by ``track_id``.

    Args:
        folders: name -> stage output folder.
        frame_rate: if given, every time-aligned stage must run at this rate.
        require_all: raise if a track is missing from any stage (else it is left out of the join
            and listed in ``missing``).
    Raises:
        StoreError: mismatched frame rates, no common tracks, or missing tracks with require_all.
    """
    stores = {name: StageStore(folder) for name, folder in folders.items()}
    rates = {name: s.frame_rate for name, s in stores.items() if s.frame_rate is not None}
    reference = frame_rate if frame_rate is not None else next(iter(rates.values()), None)
    mismatched = {n: r for n, r in rates.items() if not math.isclose(r, reference, rel_tol=1e-9)}
    if mismatched:
        raise StoreError(f"frame rates disagree: expected {reference} fps, got {mismatched}")
    sets = {name: set(s.track_ids()) for name, s in stores.items()}
    union = set().union(*sets.values())
    common = set.intersection(*sets.values()) if sets else set()
    missing = {name: sorted(union - ids) for name, ids in sets.items() if union - ids}
    if missing and require_all:
        summary = ", ".join(f"{n}: {len(v)} (e.g. {v[0]})" for n, v in missing.items())
        raise StoreError(f"tracks missing from some stages: {summary}")
    if not common:
        raise StoreError(f"no track is present in every stage of {sorted(stores)}")
    return JoinedStages(stores=stores, track_ids=sorted(common), missing=missing)
