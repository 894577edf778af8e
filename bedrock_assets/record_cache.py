"""The record cache: a record is paid for once, whatever happens to the shards around it.

Its key is what Bedrock is asked: a 128-bit BLAKE2b digest of the model id, the invocation type and the
exact ``modelInput`` bytes of the record's request line (``cache_keys``). Every record a job or an
on-demand call answered successfully is kept, with its whole outcome (the normalized output columns,
its tokens, and the job that answered it), in a **segment** per answering attempt under
``<output_uri>/cache/segments/`` (Parquet; written with the pipeline's bucket owner and KMS settings
like every object). When shards are cut (raw_dataset, a retry round), each record whose key a segment
holds is marked as answered by it (``CACHED_FROM``): it is not sent again, and merged_results takes its
outcome from the segment (the merged row's ``cached_from`` names the job). A failed record is never
kept; a changed prompt, model or inference setting changes every body and so every key: nothing is
re-used for another question.

Lookups stay proportional to a shard: the index (every segment's keys, 16 bytes a record: ~35 MB for
2.2M records) is read once per cut, and a shard reads only the segments that answer its rows. A shard
whose input did not change keeps the answers it was planned with (its ``cache_basis``), so a rerun over
an unchanged source changes no shard.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bedrock_assets.records import ANSWERED_BY, CACHE_KEY, CACHED_FROM, RECORD_ID
from bedrock_assets.storage import list_objects, put_bytes, read_bytes
from bedrock_assets.uris import S3Location

if TYPE_CHECKING:
    from bedrock_assets.ledger import JobAttempt
    from bedrock_assets.pipeline import Step

KEY_TYPE = pa.binary(16)
_MODEL_INPUT = '"modelInput":'
READERS = 8  # segments read at once


def cache_keys(requests: pa.Array | pa.ChunkedArray, model_id: str, invocation_type: str) -> pa.Array:
    """Each request line's key (null where there is no request): BLAKE2b-128 of the model id, the invocation
    type and the bytes of the line's ``modelInput`` value (the whole line if it has none). The lines are hashed
    where Arrow holds them, found by their offsets: no Python string per line."""
    lines = requests.combine_chunks() if isinstance(requests, pa.ChunkedArray) else requests
    large = pa.types.is_large_string(lines.type) or pa.types.is_large_binary(lines.type)
    lines = lines.cast(pa.large_binary() if large else pa.binary())
    n = len(lines)
    at = pc.fill_null(pc.find_substring(lines, _MODEL_INPUT), -1).to_numpy()  # a request line is
    found = at >= 0  # {"recordId":…,"modelInput":…}: the body runs from after the name to before the last brace
    width = np.int64 if large else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=width, count=lines.offset + n + 1)[lines.offset :]
    starts = (offsets[:-1] + np.where(found, at + len(_MODEL_INPUT), 0)).tolist()
    ends = (offsets[1:] - found).tolist()
    data = memoryview(lines.buffers()[2] or b"")
    base = hashlib.blake2b(f"{model_id}\x1f{invocation_type}\x1f".encode(), digest_size=16)
    keys: list[bytes | None] = []
    for valid, start, end in zip(pc.is_valid(lines).to_pylist(), starts, ends):
        if valid:
            key = base.copy()
            key.update(data[start:end])
            keys.append(key.digest())
        else:
            keys.append(None)
    return pa.array(keys, KEY_TYPE)


def _halves(keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A key array's two 64-bit halves (its nulls as zeros: callers mask them)."""
    keys = pc.fill_null(keys, b"\0" * 16) if keys.null_count else keys
    raw = np.frombuffer(keys.buffers()[1], dtype=">u8", count=2 * (keys.offset + len(keys)))[2 * keys.offset :]
    return raw[0::2].astype(np.uint64), raw[1::2].astype(np.uint64)


@dataclass(frozen=True)
class CacheIndex:
    """The keys of some segments, sorted, and which segment holds each."""

    names: list[str]
    hi: np.ndarray
    lo: np.ndarray
    segment: np.ndarray

    @classmethod
    def of(cls, names: Sequence[str], keys: Sequence[pa.Array]) -> CacheIndex:
        his, los, segs = [], [], []
        for i, k in enumerate(keys):
            hi, lo = _halves(k)
            his.append(hi)
            los.append(lo)
            segs.append(np.full(len(k), i, dtype=np.int32))
        hi = np.concatenate(his) if his else np.zeros(0, np.uint64)
        lo = np.concatenate(los) if los else np.zeros(0, np.uint64)
        seg = np.concatenate(segs) if segs else np.zeros(0, np.int32)
        order = np.lexsort((lo, hi))
        return cls(list(names), hi[order], lo[order], seg[order])

    @property
    def size(self) -> int:
        return len(self.hi)

    def lookup(self, keys: pa.Array) -> list[str | None]:
        """The segment that answers each key (None: none does, or the key is null)."""
        if not self.size or not len(keys):
            return [None] * len(keys)
        q_hi, q_lo = _halves(keys)
        valid = pc.is_valid(keys).to_numpy(zero_copy_only=False)
        found: list[str | None] = [None] * len(keys)
        start = np.searchsorted(self.hi, q_hi, side="left")
        end = np.searchsorted(self.hi, q_hi, side="right")
        for i in np.flatnonzero(valid & (end > start)).tolist():  # same first half: check the second
            for j in range(start[i], end[i]):
                if self.lo[j] == q_lo[i]:
                    found[i] = self.names[self.segment[j]]
                    break
        return found


class RecordCache:
    """A pipeline's record cache in S3 (``<output_uri>/cache/segments/``)."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self._all: CacheIndex | None = None

    @property
    def prefix(self) -> S3Location:
        return self.step.layout.cache_segments

    def segment_names(self) -> list[str]:
        prefix = self.prefix
        names = []
        for loc, _ in list_objects(self.step.s3, S3Location(prefix.bucket, prefix.key + "/")):
            if loc.key.endswith(".parquet"):
                names.append(loc.key.rsplit("/", 1)[-1].removesuffix(".parquet"))
        return sorted(names)

    def index(self, names: Sequence[str] | None = None) -> CacheIndex:
        """The keys of the named segments (default: all, read once)."""
        if names is None:
            if self._all is None:
                self._all = self._read(self.segment_names())
            return self._all
        return self._read(names)

    def _read(self, names: Sequence[str]) -> CacheIndex:
        def keys(name: str) -> pa.Array:
            data = read_bytes(self.step.s3, self.prefix.join(f"{name}.parquet"))
            return pq.read_table(io.BytesIO(data), columns=[CACHE_KEY]).column(CACHE_KEY).combine_chunks()

        with ThreadPoolExecutor(READERS) as pool:
            return CacheIndex.of(names, list(pool.map(keys, names)))

    def write_segment(self, attempt: JobAttempt, outputs: pa.Table, rows: pa.Table) -> int:
        """Keep the records ``outputs`` answered successfully (``rows``: the shard's record ids and keys); the
        number kept. One segment per answering attempt: writing it again writes the same."""
        segment = Segment(attempt, rows)
        segment.add(outputs)
        return self.save(segment)

    def save(self, segment: Segment) -> int:
        """Store a gathered segment (nothing if it kept no answer); the number of answers kept."""
        ok = segment.table()
        if not ok.num_rows:
            return 0
        sink = io.BytesIO()
        pq.write_table(ok, sink)
        put_bytes(self.step.s3, self.prefix.join(f"{segment_name(segment.attempt)}.parquet"), sink.getvalue())
        return ok.num_rows

    def outcomes(self, rows: pa.Table, schema: pa.Schema) -> pa.Table:
        """The cached outcome of each row that ``CACHED_FROM`` names a segment for: the outputs ``schema``'s
        columns with ``ANSWERED_BY``, keyed by the rows' record ids."""
        cached = rows.filter(pc.is_valid(rows.column(CACHED_FROM)))
        parts = []
        for name in sorted(set(cached.column(CACHED_FROM).to_pylist())):
            mine = cached.filter(pc.equal(cached.column(CACHED_FROM), name))
            data = read_bytes(self.step.s3, self.prefix.join(f"{name}.parquet"))
            segment = pq.read_table(io.BytesIO(data), columns=[*schema.names, CACHE_KEY, ANSWERED_BY])
            index = pc.index_in(mine.column(CACHE_KEY), value_set=segment.column(CACHE_KEY))
            if index.null_count:
                raise RuntimeError(
                    f"cache segment {name} no longer holds {index.null_count} answer(s) the shard was planned with; "
                    "re-materialize raw_dataset"
                )
            found = segment.take(index).drop_columns([CACHE_KEY])
            parts.append(found.set_column(found.schema.get_field_index(RECORD_ID), RECORD_ID, mine.column(RECORD_ID)))
        if not parts:
            return schema.empty_table().append_column(ANSWERED_BY, pa.array([], pa.string()))
        return pa.concat_tables(parts, promote_options="permissive")


class Segment:
    """One attempt's answers to keep, gathered batch by batch while its output is parsed (so the outputs file is
    not read back): ``table`` gives the successful rows with their cache key (from ``rows``: the shard's record
    ids and keys) and the attempt that answered them. ``add`` only holds the batch: the filtering and the key
    lookup happen once, in ``table``, where the segment is stored (on the upload thread, off the parsing)."""

    def __init__(self, attempt: JobAttempt, rows: pa.Table) -> None:
        self.attempt, self.rows = attempt, rows
        self._parts: list[pa.Table] = []

    def add(self, outputs: pa.Table | pa.RecordBatch) -> None:
        self._parts.append(pa.Table.from_batches([outputs]) if isinstance(outputs, pa.RecordBatch) else outputs)

    def table(self) -> pa.Table:
        if not self._parts:
            return pa.table({RECORD_ID: pa.array([], pa.string())})
        outputs = pa.concat_tables(self._parts)
        ok = outputs.filter(pc.is_null(outputs.column("error_code")))
        keys = self.rows.column(CACHE_KEY).take(
            pc.index_in(ok.column(RECORD_ID), value_set=self.rows.column(RECORD_ID))
        )
        ok = ok.append_column(CACHE_KEY, keys).filter(pc.is_valid(keys))
        return ok.append_column(ANSWERED_BY, pa.array([self.attempt.identity] * ok.num_rows, pa.string()))


def segment_name(attempt: JobAttempt) -> str:
    """The segment of one answering attempt: its shard, attempt number and job, stable across rewrites."""
    job = hashlib.sha1(attempt.identity.encode()).hexdigest()[:10]
    return f"{attempt.shard}-a{attempt.attempt}-{job}"
