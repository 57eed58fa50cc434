import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.arrays import FeatureValueError, coerce_value
from pipeline.reader import StageStore, StoreError, join_stages
from pipeline.stage import FeatureSpec
from pipeline.store import (
    ShardReader,
    StageInfo,
    TrackError,
    list_shards,
    read_shard_meta,
    shard_is_complete,
    write_shard,
)

SPECS = (
    FeatureSpec("salience", "float16", (None, 53), 50.0),
    FeatureSpec("index", "int16", (None,), 50.0),
    FeatureSpec("embedding", "float32", (4,)),
    FeatureSpec("tempo", "float64", ()),
    FeatureSpec("label", "string", ()),
    FeatureSpec("timeline", "json", ()),
)
INFO = StageInfo("demo", "1", "abc123", SPECS, {"k": 1})


def make_rows(n, seed=0, frames=(5, 0, 17)):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t = frames[i % len(frames)]
        values = {
            "salience": rng.random((t, 53)).astype(np.float16),
            "index": rng.integers(0, 53, t).astype(np.int16),
            "embedding": rng.random(4).astype(np.float32),
            "tempo": float(100 + i),
            "label": f"track {i}",
            "timeline": [{"label": "C", "start": 0.0, "end": 1.5 * i}],
        }
        rows.append({"track_id": f"t{i}", "path": f"a/{i}.wav", **{s.name: coerce_value(s, values[s.name]) for s in SPECS}})
    return rows


def test_round_trip_and_zero_copy(tmp_path):
    rows = make_rows(5)
    planned = [r["track_id"] for r in rows] + ["bad"]
    errors = [TrackError("bad", "a/bad.wav", "corrupt", "a/bad.wav: cannot decode")]
    path = write_shard(tmp_path, 3, INFO, planned, rows, errors)
    assert path.name == "shard-00003.parquet"
    reader = ShardReader(path)
    assert reader.track_ids == [f"t{i}" for i in range(5)]
    for row in rows:
        got = reader.get(row["track_id"])
        for spec in SPECS:
            if spec.dtype in ("string", "json"):
                assert got[spec.name] == (row[spec.name] if spec.dtype == "string" else __import__("json").loads(row[spec.name]))
            else:
                np.testing.assert_array_equal(got[spec.name], row[spec.name])
                assert np.asarray(got[spec.name]).dtype == np.dtype(spec.dtype)
    sal = reader.get("t2")["salience"]
    assert sal.shape == (17, 53)
    # zero-copy: the numpy view shares memory with the Arrow buffer, it does not own its data
    assert not sal.flags.owndata and not sal.flags.writeable
    assert reader.get("t1")["index"].shape == (0,)
    meta = reader.meta
    assert meta.info.frame_rate == 50.0 and meta.shard == 3 and meta.planned == 6
    assert meta.errors == tuple(errors)
    assert meta.info.features == SPECS


def test_completeness_checks_stage_params_and_plan(tmp_path):
    rows = make_rows(3)
    planned = [r["track_id"] for r in rows]
    path = write_shard(tmp_path, 0, INFO, planned, rows)
    assert shard_is_complete(path, INFO, planned)
    assert not shard_is_complete(path, StageInfo("demo", "1", "other", SPECS), planned)
    assert not shard_is_complete(path, StageInfo("demo", "2", "abc123", SPECS), planned)
    assert not shard_is_complete(path, INFO, planned + ["t9"])
    assert not shard_is_complete(tmp_path / "shard-00001.parquet", INFO, planned)
    # a truncated file is never taken as complete
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not shard_is_complete(path, INFO, planned)


def test_coerce_rejects_wrong_shapes_and_nan():
    spec = FeatureSpec("x", "float32", (None, 3))
    with pytest.raises(FeatureValueError, match="axis 1 must have size 3"):
        coerce_value(spec, np.zeros((4, 2)))
    with pytest.raises(FeatureValueError, match="2-d"):
        coerce_value(spec, np.zeros(4))
    with pytest.raises(FeatureValueError, match="NaN"):
        coerce_value(spec, np.full((2, 3), np.nan))


def test_writer_killed_mid_write_leaves_no_visible_shard(tmp_path):
    """SIGKILL during the Parquet write: the final name never appears, only a hidden temp file."""
    script = textwrap.dedent(
        f"""
        import sys, time, numpy as np
        sys.path.insert(0, {str(os.getcwd())!r})
        import pyarrow.parquet as pq
        import pipeline.store as store
        from tests.test_store import INFO, make_rows
        real = pq.write_table
        def slow_write(table, where, **kw):
            real(table, where, **kw)
            with open(where, "r+b") as f:   # leave a half-written file behind
                f.truncate(100)
            print("writing", flush=True)
            time.sleep(60)
        store.pq.write_table = slow_write
        rows = make_rows(4)
        store.write_shard({str(tmp_path)!r}, 0, INFO, [r["track_id"] for r in rows], rows)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_shards(tmp_path) == []
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".shard-00000.parquet.tmp-")


def _write_stage(folder, info, ids, frames=10):
    rows = []
    for tid in ids:
        value = {"index": coerce_value(info.features[0], np.arange(frames, dtype=np.int16))}
        rows.append({"track_id": tid, "path": tid + ".wav", **value})
    write_shard(folder, 0, info, ids, rows)


def test_stage_store_and_join(tmp_path):
    chords = StageInfo("chords", "1", "h1", (FeatureSpec("index", "int16", (None,), 50.0),))
    melody = StageInfo("melody", "1", "h2", (FeatureSpec("index", "int16", (None,), 50.0),))
    slow = StageInfo("slow", "1", "h3", (FeatureSpec("index", "int16", (None,), 86.1328125),))
    _write_stage(tmp_path / "chords", chords, ["a", "b", "c"])
    _write_stage(tmp_path / "melody", melody, ["b", "c", "d"])
    _write_stage(tmp_path / "slow", slow, ["a", "b"])

    store = StageStore(tmp_path / "chords")
    assert store.track_ids() == ["a", "b", "c"] and len(store) == 3 and "a" in store
    assert [row["track_id"] for row in store] == ["a", "b", "c"]
    assert store.errors().num_rows == 0

    joined = join_stages({"chords": tmp_path / "chords", "melody": tmp_path / "melody"}, frame_rate=50.0)
    assert joined.track_ids == ["b", "c"]
    assert joined.missing == {"chords": ["d"], "melody": ["a"]}
    assert set(joined.get("b")) == {"chords", "melody"}
    with pytest.raises(StoreError, match="missing"):
        join_stages({"chords": tmp_path / "chords", "melody": tmp_path / "melody"}, require_all=True)
    with pytest.raises(StoreError, match="frame rates disagree"):
        join_stages({"chords": tmp_path / "chords", "slow": tmp_path / "slow"})
    with pytest.raises(StoreError, match="no shards"):
        StageStore(tmp_path / "nothing")


def test_stage_store_rejects_mixed_params(tmp_path):
    a = StageInfo("chords", "1", "h1", (FeatureSpec("index", "int16", (None,), 50.0),))
    b = StageInfo("chords", "1", "h2", a.features)
    _write_stage(tmp_path, a, ["x"])
    rows = [{"track_id": "y", "path": "y.wav", "index": np.zeros(3, np.int16)}]
    write_shard(tmp_path, 1, b, ["y"], rows)
    with pytest.raises(StoreError, match="re-run the stage"):
        StageStore(tmp_path)


def test_metadata_is_readable_from_footer_only(tmp_path):
    rows = make_rows(2)
    path = write_shard(tmp_path, 0, INFO, [r["track_id"] for r in rows], rows)
    meta = read_shard_meta(path)
    assert meta.info.stage == "demo" and meta.info.params == {"k": 1}
    assert pq.ParquetFile(path).metadata.num_rows == 2
