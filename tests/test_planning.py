import pytest

from pipeline.planning import ShardingConfig, plan_shards


def _plan(durations, **kw):
    ids = [f"t{i:03d}" for i in range(len(durations))]
    return plan_shards(ids, [f"{i}.wav" for i in ids], durations, ShardingConfig(**kw))


def test_plan_by_count_covers_every_track_once_in_order():
    shards = _plan([1.0] * 10, tracks_per_shard=4)
    assert [len(s.track_ids) for s in shards] == [4, 4, 2]
    assert [s.index for s in shards] == [0, 1, 2]
    assert [t for s in shards for t in s.track_ids] == [f"t{i:03d}" for i in range(10)]


def test_plan_by_duration_respects_the_limit():
    shards = _plan([30, 30, 30, 100, 10, 10], tracks_per_shard=100, seconds_per_shard=60)
    assert [s.durations for s in shards] == [(30, 30), (30,), (100,), (10, 10)]
    assert all(s.seconds <= 60 or len(s.track_ids) == 1 for s in shards)


def test_plan_is_deterministic_and_empty_is_empty():
    assert _plan([1, 2, 3], tracks_per_shard=2) == _plan([1, 2, 3], tracks_per_shard=2)
    assert _plan([], tracks_per_shard=2) == []
    with pytest.raises(ValueError):
        ShardingConfig(tracks_per_shard=0)


def test_min_shards_cuts_a_small_run_so_every_worker_has_a_shard():
    assert [len(s.track_ids) for s in _plan([1.0] * 8, tracks_per_shard=16, min_shards=2)] == [4, 4]
    assert [len(s.track_ids) for s in _plan([1.0] * 7, tracks_per_shard=16, min_shards=2)] == [4, 3]
    # a large run keeps its cap; fewer tracks than min_shards give a shard per track
    assert [len(s.track_ids) for s in _plan([1.0] * 40, tracks_per_shard=16, min_shards=2)] == [16, 16, 8]
    assert [len(s.track_ids) for s in _plan([1.0], tracks_per_shard=16, min_shards=4)] == [1]
    with pytest.raises(ValueError):
        ShardingConfig(min_shards=0)
