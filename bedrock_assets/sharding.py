"""Streaming shard planning that honours every batch quota of the target model.

Rows arrive batch by batch; a shard closes when it reaches its record target or the next row
would overflow the byte limit. A closed shard is held back only until its successor has the
per-job minimum, so that a short tail can be rebalanced with its neighbour: no shard is ever left
below the minimum, and memory stays near one shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from bedrock_assets.bedrock.quotas import BatchQuotas


class ShardingError(ValueError):
    """The data cannot be cut into shards that satisfy the quotas."""


@dataclass
class _Pending:
    tables: list[pa.Table] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    sizes: list[np.ndarray] = field(default_factory=list)
    records: int = 0
    bytes: int = 0

    def add(self, table: pa.Table, weights: np.ndarray, sizes: np.ndarray) -> None:
        self.tables.append(table)
        self.weights.append(weights)
        self.sizes.append(sizes)
        self.records += int(weights.sum())
        self.bytes += int(sizes.sum())

    def rows(self) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        return (
            pa.concat_tables(self.tables),
            np.concatenate(self.weights) if self.weights else np.empty(0, np.int64),
            np.concatenate(self.sizes) if self.sizes else np.empty(0, np.int64),
        )


@dataclass
class Shard:
    table: pa.Table
    records: int  # rows sent to Bedrock
    bytes: int  # bytes of the shard's JSONL file
    below_minimum: bool = False  # fewer records than a job's minimum: only ``finish(short_tail=True)`` gives one


class ShardCutter:
    """Cuts rows into shards: feed prepared rows with ``add``; collect finished shards from ``add`` and ``finish``."""

    def __init__(self, quotas: BatchQuotas) -> None:
        self.quotas = quotas
        self.target = quotas.max_records_per_shard
        self.max_bytes = quotas.max_shard_bytes
        self._prev: _Pending | None = None
        self._cur = _Pending()

    def add(self, table: pa.Table, weights: np.ndarray, sizes: np.ndarray) -> Iterator[Shard]:
        too_big = np.nonzero(sizes > self.max_bytes)[0]
        if too_big.size:
            i = int(too_big[0])
            raise ShardingError(
                f"record {table.column('record_id')[i].as_py()!r} needs {int(sizes[i])} bytes, more than "
                f"the {self.max_bytes}-byte file/job limit"
            )
        pos, n = 0, table.num_rows
        while pos < n:
            w, s = weights[pos:], sizes[pos:]
            room_records = self.target - self._cur.records
            room_bytes = self.max_bytes - self._cur.bytes
            fit = min(
                int(np.searchsorted(np.cumsum(w), room_records, side="right")),
                int(np.searchsorted(np.cumsum(s), room_bytes, side="right")),
            )
            if fit:
                self._cur.add(table.slice(pos, fit), w[:fit], s[:fit])
                pos += fit
            if self._prev is not None and self._cur.records >= self.quotas.min_records_per_job:
                # the open shard can no longer end short: its predecessor is final (memory: ~1 shard)
                yield self._shard(self._prev)
                self._prev = None
            if pos < n:
                yield from self._close()

    def finish(self, short_tail: bool = False) -> Iterator[Shard]:
        """The last shards. Rows that no cut within the quotas can hold raise ShardingError, or, with
        ``short_tail``, come last as one shard ``below_minimum`` (for a retry round's small-remainder path)."""
        cur, prev = self._cur, self._prev
        minimum = self.quotas.min_records_per_job
        if cur.records == 0 and prev is not None:
            # only rejected rows (or nothing) after the last full shard: they travel with it
            yield self._shard(
                _Pending(
                    prev.tables + cur.tables,
                    prev.weights + cur.weights,
                    prev.sizes + cur.sizes,
                    prev.records,
                    prev.bytes,
                )
            )
        elif cur.records >= minimum:
            if prev is not None:
                yield self._shard(prev)
            yield self._shard(cur)
        elif prev is None and short_tail:
            yield Shard(*_table_and_totals(cur), below_minimum=True)
        elif prev is None:
            raise ShardingError(
                f"the dataset has {cur.records} valid records, fewer than the minimum of {minimum} per "
                "batch job; add rows, lower shards.min_records if the model allows, or use on-demand inference"
            )
        else:
            yield from self._rebalance(prev, cur, short_tail)

    # internals --------------------------------------------------------------------------------
    def _close(self) -> Iterator[Shard]:
        if self._cur.records == 0:
            raise ShardingError("cannot place a record within the byte limit")  # guarded by the size check
        if self._prev is not None:
            yield self._shard(self._prev)
        self._prev, self._cur = self._cur, _Pending()

    def _shard(self, pending: _Pending) -> Shard:
        return Shard(*_table_and_totals(pending))

    def _rebalance(self, prev: _Pending, cur: _Pending, short_tail: bool = False) -> Iterator[Shard]:
        """Split a short tail and its (full) neighbour evenly within every limit (or, when no cut can and
        ``short_tail``, the neighbour as it is and the tail below the minimum)."""
        table, weights, sizes = _Pending(
            prev.tables + cur.tables, prev.weights + cur.weights, prev.sizes + cur.sizes
        ).rows()
        total_records, total_bytes = int(weights.sum()), int(sizes.sum())
        q = self.quotas
        rec_prefix = np.cumsum(weights)
        byte_prefix = np.cumsum(sizes)
        # candidate cut after row i: left = rows[:i+1]
        left_r, left_b = rec_prefix, byte_prefix
        ok = (
            (left_r >= q.min_records_per_job)
            & (total_records - left_r >= q.min_records_per_job)
            & (left_r <= q.max_records_per_shard)
            & (total_records - left_r <= q.max_records_per_shard)
            & (left_b <= self.max_bytes)
            & (total_bytes - left_b <= self.max_bytes)
        )
        candidates = np.nonzero(ok)[0]
        if not candidates.size and short_tail:
            yield self._shard(prev)
            yield Shard(*_table_and_totals(cur), below_minimum=True)
            return
        if not candidates.size:
            raise ShardingError(
                f"cannot split the last {total_records} records ({total_bytes} bytes) into shards of "
                f"{q.min_records_per_job}-{q.max_records_per_shard} records within {self.max_bytes} bytes"
            )
        cut = int(candidates[np.argmin(np.abs(left_r[candidates] - total_records / 2))]) + 1
        for part in (slice(0, cut), slice(cut, table.num_rows)):
            w, s = weights[part], sizes[part]
            yield Shard(table.slice(part.start, part.stop - part.start).combine_chunks(), int(w.sum()), int(s.sum()))


def _table_and_totals(pending: _Pending) -> tuple[pa.Table, int, int]:
    table, _, _ = pending.rows()
    return table, pending.records, pending.bytes
