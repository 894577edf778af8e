"""retry_rounds: the retriable records of a finished round, pooled into the shards of the next one.

Round 0 is the first pass (shards ``s00000``...). When every shard of the latest round is merged and
some rows carry a retriable error (``bedrock.error_classes``), round N+1 takes exactly those rows
(same record ids, same request bodies) from all of that round's shards, cuts them into shards within
every batch quota, and registers them as partitions ``r<N+1>-00000``... of the same shard assets, so
they are submitted, polled and merged like any shard. A round with fewer records than a job's
minimum runs on demand (the runtime API) or is not made, as ``retry.small_remainder`` says.
merged_dataset then takes each record's outcome from the last round that holds it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from dagster import MetadataValue

from bedrock_assets.bedrock.error_classes import retriable_mask
from bedrock_assets.graph.job_completion import MergedMark, jobs_digest, unmerged
from bedrock_assets.graph.raw_dataset import BATCH_ROWS, ShardInfo, load_shard_plan, shard_digest
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobAttempt, now_iso
from bedrock_assets.metadata import table
from bedrock_assets.records import INPUT_ERROR, RECORD_ID, REQUEST, SOURCE_FILE, request_chars, request_lines
from bedrock_assets.sharding import Shard, ShardPlanner
from bedrock_assets.sources import SourceError
from bedrock_assets.spec import PipelineSpec, RetrySpec
from bedrock_assets.storage import get_json, local_copy, put_json, upload_file

_RETRY_KEY = re.compile(r"r(\d{1,2})-\d{5}")


def retry_key(round_number: int, index: int) -> str:
    """Partition key of a retry shard (also part of S3 keys and job names)."""
    return f"r{round_number}-{index:05d}"


def round_of(key: str) -> int:
    """The round a shard partition belongs to: 0 for first-pass shards."""
    match = _RETRY_KEY.fullmatch(key)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class RetryRound:
    round: int
    basis: str  # which merged jobs of the previous round it was cut from (jobs_digest)
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


def load_retry_state(spec: PipelineSpec, s3: Any) -> RetryState:
    try:
        data = get_json(s3, PipelineLayout.for_uri(spec.output_uri).retry_state)
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
        return RetryState()
    rounds = [
        RetryRound(r["round"], r["basis"], r["records"], r["on_demand"], [ShardInfo(**s) for s in r["shards"]])
        for r in data["rounds"]
    ]
    return RetryState(rounds, data.get("stopped_at"))


def save_retry_state(spec: PipelineSpec, s3: Any, state: RetryState) -> None:
    put_json(s3, PipelineLayout.for_uri(spec.output_uri).retry_state, asdict(state))


@dataclass(frozen=True)
class RoundProgress:
    """The latest round with shards: are they all merged, and how many of their rows could be retried."""

    round: int
    keys: list[str]
    all_merged: bool
    retriable: int
    basis: str

    @classmethod
    def of(
        cls, partitions: Sequence[str], latest: Mapping[str, JobAttempt], marks: Mapping[str, MergedMark]
    ) -> RoundProgress:
        current = max((round_of(k) for k in partitions), default=0)
        keys = [k for k in partitions if round_of(k) == current]
        merged = {k: m.job for k, m in marks.items()}
        return cls(
            round=current,
            keys=keys,
            all_merged=bool(keys) and not unmerged(keys, latest, merged),
            retriable=sum(marks[k].retriable for k in keys if k in marks),
            basis=jobs_digest(keys, latest),
        )

    def next_round_due(self, retry: RetrySpec, min_records: int) -> bool:
        """Another round would send records: this one is merged, left retriable rows, and rounds remain."""
        if not self.all_merged or self.retriable == 0 or self.round >= retry.max_rounds:
            return False
        return self.retriable >= min_records or retry.small_remainder == "on_demand"


@dataclass(frozen=True)
class RoundPlan:
    """What the retry_rounds step did: the round it planned (or kept), or why it planned none."""

    round: RetryRound | None
    reason: str
    removed: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        r = self.round
        meta: dict[str, Any] = {"decision": MetadataValue.text(self.reason)}
        if r is not None:
            meta |= {
                "round": r.round,
                "records": r.records,
                "shards": len(r.shards),
                "on_demand": r.on_demand,
                "retry_shards": table([{"shard": s.key, "records": s.records, "bytes": s.bytes} for s in r.shards]),
            }
        return meta


def retry_due(spec: PipelineSpec, s3: Any, progress: RoundProgress, min_records: int) -> bool:
    """The next round should be cut now (and nobody stopped the pipeline)."""
    return progress.next_round_due(spec.retry, min_records) and not load_retry_state(spec, s3).stopped_at


def plan_next_round(spec: PipelineSpec, s3: Any, progress: RoundProgress, min_records: int, quotas: Any) -> RoundPlan:
    """Cut round ``progress.round + 1`` from the retriable rows of the latest round's merged shards.

    Idempotent: a round already cut from the same merged jobs is kept as it is (its shards, and so
    their job names, stay the same); rounds cut from jobs that have since changed are replaced.
    """
    state = load_retry_state(spec, s3)
    number = progress.round + 1
    if state.stopped_at:
        return RoundPlan(None, f"no retry round: the pipeline was stopped at {state.stopped_at}")
    if not progress.next_round_due(spec.retry, min_records):
        return RoundPlan(None, _why_not(progress, spec.retry, min_records))
    kept = [r for r in state.rounds if r.round < number]
    existing = next((r for r in state.rounds if r.round == number), None)
    if existing is not None and existing.basis == progress.basis:
        return RoundPlan(existing, f"round {number} was already planned from these jobs")
    on_demand = progress.retriable < min_records
    shards = _cut_round(spec, s3, progress.keys, number, quotas, on_demand)
    records = sum(s.records for s in shards)
    new = RetryRound(number, progress.basis, records, on_demand, shards)
    removed = [s.key for r in state.rounds if r.round >= number for s in r.shards if s.key not in new.keys]
    save_retry_state(spec, s3, replace(state, rounds=[*kept, new]))
    how = "on demand (fewer than a job's minimum)" if on_demand else f"in {len(shards)} batch job(s)"
    return RoundPlan(new, f"round {number}: {records} retriable record(s) of round {progress.round}, {how}", removed)


def _why_not(progress: RoundProgress, retry: RetrySpec, min_records: int) -> str:
    if not progress.all_merged:
        return f"no retry round yet: round {progress.round} is not fully merged"
    if progress.retriable == 0:
        return f"no retry round: round {progress.round} left no retriable rows"
    if progress.round >= retry.max_rounds:
        return f"no retry round: retry.max_rounds ({retry.max_rounds}) reached; {progress.retriable} rows stay failed"
    return (
        f"no retry round: {progress.retriable} retriable rows, fewer than a job's minimum of {min_records}, "
        "and retry.small_remainder is 'leave'"
    )


def _cut_round(
    spec: PipelineSpec, s3: Any, sources: Sequence[str], number: int, quotas: Any, on_demand: bool
) -> list[ShardInfo]:
    """Stream the retriable rows of ``sources`` shard by shard into the new round's shard parts."""
    layout = PipelineLayout.for_uri(spec.output_uri)
    adapter = spec.adapter()
    planner = ShardPlanner(quotas)
    pending: list[pa.Table] = []  # on demand: fewer rows than one job's minimum
    shards: list[ShardInfo] = []

    def write(shard: Shard) -> None:
        key = retry_key(number, len(shards))
        path = Path(tmp) / f"{key}.parquet"
        pq.write_table(shard.table.drop_columns([REQUEST]), path, row_group_size=BATCH_ROWS)
        upload_file(s3, path, layout.shard_rows(key), keep=True)  # the file is handed over
        chars = request_chars(shard.table, adapter)
        shards.append(
            ShardInfo(key, shard.table.num_rows, shard.records, shard.bytes, shard_digest(shard.table), -1, chars)
        )

    with tempfile.TemporaryDirectory(prefix="bedrock-assets-retry-") as tmp:
        for source in sources:
            rows = _retriable_rows(s3, layout, source)
            if rows is None:
                continue
            requests, errors = request_lines(rows, rows.column(RECORD_ID), adapter)
            # a request the adapter now refuses is not sent again: it ends as InvalidModelInput (final)
            rows = rows.set_column(rows.schema.get_field_index(INPUT_ERROR), INPUT_ERROR, errors)
            rows = rows.append_column(REQUEST, requests)
            if on_demand:
                pending.append(rows)
                continue
            sent = pc.is_valid(requests).to_numpy(zero_copy_only=False).astype(np.int64)
            sizes = pc.fill_null(pc.add(pc.binary_length(requests), 1), 0).to_numpy(zero_copy_only=False)
            for shard in planner.add(rows, sent, sizes.astype(np.int64)):
                write(shard)
        if on_demand and pending:
            rows = pa.concat_tables(pending)
            requests = rows.column(REQUEST)
            line_bytes = pc.sum(pc.add(pc.binary_length(requests), 1)).as_py() or 0
            write(Shard(rows, len(requests) - requests.null_count, int(line_bytes)))
        else:
            for shard in planner.finish():
                write(shard)
    return [replace(s, on_demand=on_demand) for s in shards]


def _retriable_rows(s3: Any, layout: PipelineLayout, source: str) -> pa.Table | None:
    """The rows of shard ``source`` whose merged outcome is a retriable error (None if there are none)."""
    with local_copy(s3, layout.merged(source)) as path:
        merged = pq.read_table(path, columns=[RECORD_ID, "error_code", "error_message"])
    ids = merged.column(RECORD_ID).filter(retriable_mask(merged.column("error_code"), merged.column("error_message")))
    if len(ids) == 0:
        return None
    with local_copy(s3, layout.shard_rows(source)) as path:
        rows = pq.read_table(path)
    rows = rows.filter(pc.is_in(rows.column(RECORD_ID), value_set=ids.combine_chunks()))
    rows = rows.filter(pc.is_null(rows.column(INPUT_ERROR)))
    # one plain type across shards (each part has its own dictionary)
    return rows.set_column(
        rows.schema.get_field_index(SOURCE_FILE), SOURCE_FILE, pc.cast(rows.column(SOURCE_FILE), pa.string())
    )


def select_shards(spec: PipelineSpec, s3: Any, keys: Sequence[str]) -> list[ShardInfo]:
    """The named shards, first-pass or retry; SourceError if the current plan or rounds lack one."""
    first = [k for k in keys if round_of(k) == 0]
    infos = {s.key: s for s in load_shard_plan(spec, s3).select(first)} if first else {}
    retried = [k for k in keys if round_of(k) > 0]
    if retried:
        state = load_retry_state(spec, s3)
        for key in retried:
            info = state.shard(key)
            if info is None:
                raise SourceError(
                    f"retry shard {key} is not in the current retry rounds "
                    f"({PipelineLayout.for_uri(spec.output_uri).retry_state.uri}); it was replaced or removed"
                )
            infos[key] = info
    return [infos[k] for k in keys]


def stop_retries(spec: PipelineSpec, s3: Any) -> None:
    """A person stopped the pipeline: no further retry round is cut (until raw_dataset is re-planned)."""
    state = load_retry_state(spec, s3)
    if not state.stopped_at:
        save_retry_state(spec, s3, replace(state, stopped_at=now_iso()))
