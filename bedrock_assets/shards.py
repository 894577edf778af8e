"""The shard catalogue: a pipeline's shards (first pass and retry rounds), their keys, and where they are recorded.

raw_dataset writes the shard index (``canonical/_shards.json``): every first-pass shard ``s00000``...
with its rows, records, bytes and the digest of its JSONL input. retry_rounds writes the retry state
(``retries/_rounds.json``): the planned rounds, each with its shards ``r<N>-00000``..., and whether a
person stopped the pipeline. Both write their shards' rows as parts (``canonical/<shard>.parquet``)
and their request lines as staged JSONL inputs (``canonical/<shard>.jsonl``) with ``ShardParts``. Every shard step finds its shards here (``select_shards``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from dagster import MetadataValue

from bedrock_assets.ledger import now_iso
from bedrock_assets.metadata import table
from bedrock_assets.record_cache import RecordCache, cache_keys
from bedrock_assets.records import CACHE_KEY, CACHED_FROM, MAX_TOKENS, REQUEST, line_buffers, request_chars
from bedrock_assets.sharding import Shard
from bedrock_assets.sources import SourceError
from bedrock_assets.storage import UploadBehind, get_json, is_missing, put_json, upload_file

if TYPE_CHECKING:
    from bedrock_assets.pipeline import Step

BATCH_ROWS = 16_384  # rows per record batch read, and per row group written
_RETRY_KEY = re.compile(r"r(\d{1,2})-\d{5}")


def shard_key(index: int) -> str:
    """Partition key of the first-pass shard at ``index`` (also part of S3 keys and job names)."""
    return f"s{index:05d}"


def retry_key(round_number: int, index: int) -> str:
    """Partition key of a retry shard (also part of S3 keys and job names)."""
    return f"r{round_number}-{index:05d}"


def round_of(key: str) -> int:
    """The round a shard partition belongs to: 0 for first-pass shards."""
    match = _RETRY_KEY.fullmatch(key)
    return int(match.group(1)) if match else 0


def span(shards: Sequence[str]) -> str:
    """A run of shard keys as text: ``s00000`` or ``s00000..s00015``."""
    if not shards:
        return ""
    return shards[0] if len(shards) == 1 else f"{shards[0]}..{shards[-1]}"


@dataclass(frozen=True)
class ShardInfo:
    key: str
    rows: int  # input rows, including rows rejected before submission
    records: int  # rows with a Bedrock request
    bytes: int  # size of the JSONL input file
    digest: str  # sha256 of the JSONL input: names the job, so changed input means a new job
    input_chars: int = 0  # prompt text sent (for the token estimate)
    on_demand: bool = False  # a retry shard too small for a batch job: sent through the runtime API
    max_tokens: int | None = None  # a retry shard resending answers cut off: the raised max_tokens (else the spec's)
    cached: int = 0  # records the record cache answers (not sent; ``records`` counts the others)
    full_digest: str | None = None  # with cached records: the digest of every record's line (the shard's identity)
    cache_basis: list[str] = field(default_factory=list)  # the cache segments that answer its cached records

    @property
    def identity(self) -> str:
        """What the shard's rows ask, cache or not: an unchanged shard has the same identity."""
        return self.full_digest or self.digest

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardInfo:
        """A recorded shard (fields an older version recorded and no one reads are left out)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class ShardIndex:
    """The prepared dataset: where it came from and its first-pass shards, in order."""

    files: list[str]
    rows: int
    rejected: int
    shards: list[ShardInfo]

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.shards]

    def select(self, keys: list[str]) -> list[ShardInfo]:
        """The named shards; SourceError if the index no longer has one of them."""
        index = {s.key: s for s in self.shards}
        missing = [k for k in keys if k not in index]
        if missing:
            raise SourceError(f"shard(s) {missing} are not in the current shard plan; re-materialize raw_dataset")
        return [index[k] for k in keys]

    def same_shards(self, other: ShardIndex) -> bool:
        """Both cut the same shards with the same inputs."""
        return [(s.key, s.identity) for s in self.shards] == [(s.key, s.identity) for s in other.shards]

    def metadata(self, step: Step) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rejected_rows": self.rejected,
            "shards": len(self.shards),
            "source_files": len(self.files),
            "shard_plan": table(
                [{"shard": s.key, "rows": s.rows, "records": s.records, "bytes": s.bytes} for s in self.shards]
            ),
            "canonical_uri": MetadataValue.path(step.layout.root.join("canonical").uri),
        }


class MissingShardIndex(SourceError):
    """raw_dataset has not written a shard index under this output_uri yet."""


def load_shard_index(step: Step) -> ShardIndex:
    """The index raw_dataset wrote last; MissingShardIndex if it never ran for this output_uri."""
    loc = step.layout.shard_index
    try:
        data = get_json(step.s3, loc)
    except ClientError as e:
        if not is_missing(e):
            raise
        raise MissingShardIndex(f"no shard plan at {loc.uri}: materialize {step.name}/raw_dataset first") from None
    return ShardIndex(data["files"], data["rows"], data["rejected"], [ShardInfo.from_dict(s) for s in data["shards"]])


def load_shard_index_if_any(step: Step) -> ShardIndex | None:
    try:
        return load_shard_index(step)
    except MissingShardIndex:
        return None


def save_shard_index(step: Step, index: ShardIndex) -> None:
    put_json(step.s3, step.layout.shard_index, asdict(index))


@dataclass(frozen=True)
class RetryRound:
    round: int
    basis: str  # which merged jobs of the previous round it was cut from (progress.jobs_digest)
    records: int
    on_demand: bool
    shards: list[ShardInfo]

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.shards]


@dataclass(frozen=True)
class RetryState:
    """The planned rounds (``retries/_rounds.json``), and whether a person stopped the pipeline."""

    rounds: list[RetryRound] = field(default_factory=list)
    stopped_at: str | None = None

    def shard(self, key: str) -> ShardInfo | None:
        for r in self.rounds:
            for s in r.shards:
                if s.key == key:
                    return s
        return None


def load_retry_state(step: Step) -> RetryState:
    try:
        data = get_json(step.s3, step.layout.retry_state)
    except ClientError as e:
        if not is_missing(e):
            raise
        return RetryState()
    rounds = [
        RetryRound(r["round"], r["basis"], r["records"], r["on_demand"], [ShardInfo.from_dict(s) for s in r["shards"]])
        for r in data["rounds"]
    ]
    return RetryState(rounds, data.get("stopped_at"))


def save_retry_state(step: Step, state: RetryState) -> None:
    put_json(step.s3, step.layout.retry_state, asdict(state))


def mark_stopped(step: Step) -> None:
    """A person stopped the pipeline: no new job and no further retry round (until ``mark_resumed``)."""
    state = load_retry_state(step)
    if not state.stopped_at:
        save_retry_state(step, replace(state, stopped_at=now_iso()))


def mark_resumed(step: Step) -> str | None:
    """Undo ``mark_stopped``: retry rounds may be cut again. Returns when the pipeline had been stopped."""
    state = load_retry_state(step)
    if state.stopped_at:
        save_retry_state(step, replace(state, stopped_at=None))
    return state.stopped_at


def select_shards(step: Step, keys: Sequence[str]) -> list[ShardInfo]:
    """The named shards, first-pass or retry; SourceError if the current index or rounds lack one."""
    first = [k for k in keys if round_of(k) == 0]
    infos = {s.key: s for s in load_shard_index(step).select(first)} if first else {}
    retried = [k for k in keys if round_of(k) > 0]
    if retried:
        state = load_retry_state(step)
        for key in retried:
            info = state.shard(key)
            if info is None:
                raise SourceError(
                    f"retry shard {key} is not in the current retry rounds ({step.layout.retry_state.uri}); "
                    "it was replaced or removed"
                )
            infos[key] = info
    return [infos[k] for k in keys]


LINES_DIGEST = "sha256"  # the user metadata of a shard's staged lines: their sha256, the shard's digest
LINES_SETTINGS = "settings"  # ... and the digest of the settings they were rendered from (spec.settings_digest)


def shard_digest(rows: pa.Table) -> str:
    """sha256 of the shard's JSONL input file (its request lines)."""
    return _lines_to(rows.column(REQUEST), lambda piece: None)


def write_lines(requests: pa.ChunkedArray, path: Path, digest: str | None = None) -> str:
    """Write the shard's JSONL input (its request lines) to ``path``; its sha256 (the shard digest), hashed
    while writing unless ``digest`` is it already."""
    with open(path, "wb") as out:
        if digest is None:
            return _lines_to(requests, out.write)
        for piece in line_buffers(requests):
            out.write(piece)
        return digest


def _lines_to(requests: pa.ChunkedArray, write: Callable[[pa.Buffer], object]) -> str:
    digest = hashlib.sha256()
    for piece in line_buffers(requests):
        write(piece)
        digest.update(piece)
    return digest.hexdigest()


class ShardParts:
    """Writes each shard's rows as a part (``canonical/<shard>.parquet``, without the request lines) and its
    request lines as its staged JSONL input (``canonical/<shard>.jsonl``, with their sha256 as
    ``LINES_DIGEST`` and the settings they were rendered from as ``LINES_SETTINGS``: jsonl_shards copies it
    where the job reads it while both are still the pipeline's, so a line is rendered once), and
    describes each shard. A shard's files upload while the next shard is cut: one upload in flight, so local
    disk holds two shards' files at most. ``write=False`` (a plan) describes the shards and writes nothing.

    With the record cache (``spec.cache``), a shard's records that the cache answers are marked
    (``record_cache.CACHED_FROM``) and not counted as sent (nor staged); ``previous`` (the shards cut last
    time) keeps an unchanged shard's cached records what they were."""

    def __init__(self, step: Step, write: bool = True, previous: Sequence[ShardInfo] = ()) -> None:
        self.step = step
        self.write = write
        self.shards: list[ShardInfo] = []
        self.cache = RecordCache(step) if step.spec.cache else None
        self.previous = {s.key: s for s in previous}
        self._rendered_from = step.spec.settings_digest()  # what every staged line is rendered from
        self._tmp = tempfile.TemporaryDirectory(prefix="bedrock-assets-parts-")
        self._uploads = UploadBehind()

    def __enter__(self) -> ShardParts:
        return self

    def add(self, key: str, shard: Shard, on_demand: bool = False) -> ShardInfo:
        rows, basis = shard.table, list[str]()
        # the lines' digest comes with writing them; the cache compares the whole shard's before marking it
        full_digest = shard_digest(rows) if self.cache is not None or not self.write else None
        if self.cache is not None:
            rows, basis = self._mark_cached(key, rows, full_digest or "")
        sent = rows if not basis else rows.filter(pc.is_null(rows.column(CACHED_FROM)))
        if self.write:  # the lines hashed once: with the cache, they are the whole shard's unless some are cached
            digest = self._store(key, rows, sent, full_digest if not basis else None)
        else:  # a plan
            digest = full_digest if full_digest and not basis else shard_digest(sent)
        chars = request_chars(sent, self.step.adapter)
        raised = pc.max(rows.column(MAX_TOKENS)).as_py() if MAX_TOKENS in rows.column_names else None
        if not basis:
            info = ShardInfo(key, rows.num_rows, shard.records, shard.bytes, digest, chars, on_demand, raised)
        else:
            requests = sent.column(REQUEST)
            records = len(requests) - requests.null_count
            size = int(pc.sum(pc.add(pc.binary_length(requests), 1)).as_py() or 0)
            small = 0 < records < self.step.quotas.min_records_per_job  # the small-remainder path
            info = ShardInfo(
                key, rows.num_rows, records, size, digest, chars, on_demand or small, raised,
                cached=shard.records - records, full_digest=full_digest, cache_basis=basis,
            )  # fmt: skip
        self.shards.append(info)
        return info

    def _store(self, key: str, rows: pa.Table, sent: pa.Table, digest: str | None) -> str:
        """Write the shard's part and staged lines and send both to S3 behind the cut; the lines' sha256
        (``digest``, when the caller knows it already)."""
        part, lines = Path(self._tmp.name) / f"{key}.parquet", Path(self._tmp.name) / f"{key}.jsonl"
        pq.write_table(rows.drop_columns([REQUEST]), part, row_group_size=BATCH_ROWS)
        digest = write_lines(sent.column(REQUEST), lines, digest)
        self._uploads.send(partial(self._upload, key, part, lines, digest))
        return digest

    def _upload(self, key: str, part: Path, lines: Path, digest: str) -> None:
        s3, layout = self.step.s3, self.step.layout
        upload_file(s3, part, layout.shard_rows(key), keep=True)  # it becomes this process's local copy
        metadata = {LINES_DIGEST: digest, LINES_SETTINGS: self._rendered_from}
        upload_file(s3, lines, layout.shard_lines(key), metadata=metadata)
        lines.unlink()

    def _mark_cached(self, key: str, rows: pa.Table, full_digest: str) -> tuple[pa.Table, list[str]]:
        """The rows with their cache keys and the segment answering each (if any), and the segments used. An
        unchanged shard looks only in the segments it was planned with (so it stays the same shard)."""
        assert self.cache is not None
        spec = self.step.spec
        rows = rows.drop_columns([c for c in (CACHE_KEY, CACHED_FROM) if c in rows.column_names])  # a retry's rows
        keys = cache_keys(rows.column(REQUEST), spec.model.id, spec.model.invocation_type)
        rows = rows.append_column(CACHE_KEY, keys)
        before = self.previous.get(key)
        if before is not None and before.identity == full_digest:
            index = self.cache.index(before.cache_basis) if before.cache_basis else None
        else:
            index = self.cache.index()
        found = index.lookup(keys) if index is not None else [None] * rows.num_rows
        rows = rows.append_column(CACHED_FROM, pa.array(found, pa.string()))
        return rows, sorted({f for f in found if f is not None})

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self._uploads.wait()  # every part is in S3 before the index or state that names it
        finally:
            self._uploads.close()
            self._tmp.cleanup()
