"""Shard planning: every quota honoured, no tail below the minimum, streaming equals one-shot."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.sharding import ShardCutter, ShardingError


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({"record_id": [f"r{i}" for i in range(start, start + n)]})


def plan(sizes, quotas: BatchQuotas, weights=None, batch: int | None = None):
    sizes = np.asarray(sizes, dtype=np.int64)
    weights = np.ones(len(sizes), np.int64) if weights is None else np.asarray(weights, np.int64)
    table = rows(len(sizes))
    cutter = ShardCutter(quotas)
    shards = []
    step = batch or len(sizes) or 1
    for i in range(0, len(sizes), step):
        shards += list(cutter.add(table.slice(i, step), weights[i : i + step], sizes[i : i + step]))
    shards += list(cutter.finish())
    return shards


Q = BatchQuotas(
    min_records_per_job=10, max_records_per_file=50, max_records_per_job=50, max_file_bytes=10_000, max_job_bytes=10_000
)


def ids(shard) -> list[str]:
    return shard.table.column("record_id").to_pylist()


def test_exactly_at_the_record_limit_gives_full_shards_without_tail():
    shards = plan([10] * 100, Q)
    assert [s.records for s in shards] == [50, 50]


def test_tail_below_minimum_is_rebalanced_not_left_short():
    shards = plan([10] * 103, Q)  # greedy would give 50, 50, 3
    counts = [s.records for s in shards]
    assert sum(counts) == 103 and min(counts) >= Q.min_records_per_job and max(counts) <= 50
    assert sum((ids(s) for s in shards), []) == [f"r{i}" for i in range(103)]  # order and coverage


def test_byte_limit_closes_shards_and_is_never_exceeded():
    shards = plan([500] * 45, Q)  # 20 records of 500 bytes fill 10_000 exactly: 20, 20, 5 -> 20, 12, 13
    assert all(s.bytes <= Q.max_shard_bytes for s in shards)
    assert [s.records for s in shards] == [20, 12, 13]


def test_exactly_at_the_byte_limit_fits():
    shards = plan([500] * 20, Q)
    assert [(s.records, s.bytes) for s in shards] == [(20, 10_000)]


def test_record_larger_than_the_file_limit_is_a_clear_error():
    with pytest.raises(ShardingError, match=r"record 'r3' needs 10001 bytes"):
        plan([10, 10, 10, 10_001] + [10] * 20, Q)


def test_dataset_below_minimum_is_a_clear_error():
    with pytest.raises(ShardingError, match="9 valid records, fewer than the minimum of 10"):
        plan([10] * 9, Q)


def test_rejected_rows_travel_with_shards_but_do_not_count():
    weights = [1] * 60 + [0] * 5
    sizes = [10] * 60 + [0] * 5
    shards = plan(sizes, Q, weights=weights)
    assert sum(s.table.num_rows for s in shards) == 65
    assert sum(s.records for s in shards) == 60
    assert all(s.records >= 10 for s in shards)


def test_streaming_in_small_batches_equals_one_batch():
    rng = np.random.default_rng(7)
    sizes = rng.integers(50, 900, size=997)
    one = plan(sizes, Q)
    streamed = plan(sizes, Q, batch=13)
    assert [ids(s) for s in one] == [ids(s) for s in streamed]
    for s in one:
        assert Q.min_records_per_job <= s.records <= 50 and s.bytes <= Q.max_shard_bytes


def test_appending_rows_leaves_every_earlier_shard_as_it_was():
    """Boundaries depend only on the rows before them: an append re-pays at most the last two shards."""
    before = plan([10] * 300, Q)
    after = plan([10] * 301, Q)
    assert [ids(s) for s in after[:-2]] == [ids(s) for s in before[:-1]]
    assert sum(s.records for s in after) == 301 and all(s.records >= Q.min_records_per_job for s in after)


# 13 records: more than one shard holds, fewer than two shards need
TIGHT = BatchQuotas(
    min_records_per_job=10,
    max_records_per_file=12,
    max_records_per_job=12,
    max_file_bytes=100_000,
    max_job_bytes=100_000,
)


def test_impossible_split_is_reported():
    with pytest.raises(ShardingError, match="cannot split"):
        plan([10] * 13, TIGHT)


def test_shards_are_released_while_streaming_not_held_to_the_end():
    cutter = ShardCutter(Q)
    released = []
    for start in range(0, 70, 10):  # 50 fill shard 1; shard 2 reaches the minimum of 10 at 60
        table = rows(10, start)
        released += list(cutter.add(table, np.ones(10, np.int64), np.full(10, 10, np.int64)))
    assert [s.records for s in released] == [50]
    assert [s.records for s in cutter.finish()] == [20]


def test_with_a_short_tail_allowed_an_impossible_split_ends_in_a_tail_below_the_minimum():
    cutter = ShardCutter(TIGHT)
    shards = list(cutter.add(rows(13), np.ones(13, np.int64), np.full(13, 10, np.int64)))
    shards += list(cutter.finish(short_tail=True))
    assert [(s.records, s.below_minimum) for s in shards] == [(12, False), (1, True)]
    alone = ShardCutter(TIGHT)
    list(alone.add(rows(3), np.ones(3, np.int64), np.full(3, 10, np.int64)))
    assert [(s.records, s.below_minimum) for s in alone.finish(short_tail=True)] == [(3, True)]
