"""The job ledger: one DynamoDB item per shard attempt, written with conditional updates.

The ledger is what money depends on: which job each shard attempt has, so that a rerun re-attaches
instead of paying twice, and so that racing runs claim a submission only once.

The completion sensor reads a pipeline's attempts every tick. So that a tick costs what changed, not every
shard, the table has an index of the items by ``updated_at`` (``by_update``): after one full read, a process
reads only the items written since its last read (less an overlap for the index's lag and writers'
clocks), and reads everything again every ``FULL_EVERY``. A table made before the index reads everything.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from dagster import InitResourceContext
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field

from bedrock_assets.aws import boto3_session, client_args, shared
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import CANARY_SHARD


class LedgerConflict(RuntimeError):
    """Another run changed the item first (a conditional write failed)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobCounts:
    """Record counts Bedrock reports for a job (all 0 while it is Validating)."""

    total: int = 0
    processed: int = 0
    succeeded: int = 0
    errored: int = 0

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> JobCounts:
        return cls(
            int(job.get("totalRecordCount", 0)),
            int(job.get("processedRecordCount", 0)),
            int(job.get("successRecordCount", 0)),
            int(job.get("errorRecordCount", 0)),
        )


@dataclass(frozen=True)
class JobAttempt:
    """One attempt at running a shard's batch job: what was (or will be) submitted and what became of it."""

    pipeline: str
    shard: str
    attempt: int
    job_name: str
    input_digest: str
    model_id: str
    records: int
    input_uri: str
    output_uri: str
    status: JobStatus = JobStatus.QUEUED
    job_arn: str | None = None
    message: str | None = None
    counts: JobCounts = field(default_factory=JobCounts)
    input_tokens: int | None = None
    output_tokens: int | None = None
    worst_usd: float | None = None  # the most this attempt can cost (every record at max_tokens), if priced
    created_at: str | None = None
    queued_at: str | None = None
    submitted_at: str | None = None
    end_time: str | None = None
    updated_at: str | None = None
    claimed_by: str | None = None  # the process submitting it (processes.OWNER), while Submitting
    started_at: str | None = None  # first seen InProgress (answered on demand: when answering began)
    progressed_at: str | None = None  # when its processed count last moved (or it started)
    service_tier: str | None = None  # answered on demand: the runtime's service tier it was priced at
    stopped_by: str | None = None  # who stopped its job: "person", or "cutoff" (a deadline's; its records go on demand)

    @property
    def job_id(self) -> str | None:
        return self.job_arn.rsplit("/", 1)[-1] if self.job_arn else None

    @property
    def identity(self) -> str:
        """What a merged shard records to say which attempt it merged (the ARN, or the name if none)."""
        return self.job_arn or self.job_name

    def to_item(self) -> dict[str, Any]:
        item = {k: _stored(v) for k, v in asdict(self).items() if v is not None}
        item["status"] = self.status.value
        item["counts"] = asdict(self.counts)
        item["shard_attempt"] = sort_key(self.shard, self.attempt)
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> JobAttempt:
        known = {f.name for f in fields(cls)}
        values = {k: _plain(v) for k, v in item.items() if k in known}
        values["status"] = JobStatus(values["status"])
        values["counts"] = JobCounts(**values.get("counts", {}))
        return cls(**values)


def latest_by_shard(attempts: list[JobAttempt]) -> dict[str, JobAttempt]:
    """Each shard's latest attempt, from a pipeline's attempts in sort-key order (the last one wins); the canary's
    attempts (``bedrock.canary``) are billed with the rest but are no shard's."""
    return {a.shard: a for a in attempts if a.shard != CANARY_SHARD}


# Fields an update may set (everything but the key and what identifies the submitted input).
_UPDATABLE = {
    "status",
    "job_arn",
    "message",
    "counts",
    "input_tokens",
    "output_tokens",
    "queued_at",
    "submitted_at",
    "end_time",
    "claimed_by",
    "started_at",
    "progressed_at",
    "service_tier",
    "stopped_by",
}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _stored(value: Any) -> Any:
    """A value as DynamoDB takes it (numbers that are not integers are Decimals)."""
    if isinstance(value, JobStatus):
        return value.value
    if isinstance(value, JobCounts):
        return asdict(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def sort_key(shard: str, attempt: int) -> str:
    return f"{shard}#{attempt:04d}"


BY_UPDATE = "by_update"  # the index of items by (pipeline, updated_at), every attribute projected
OVERLAP = timedelta(seconds=60)  # items written this long before the last read are read again (index lag: ms)
FULL_EVERY = 15 * 60.0  # seconds between two full reads of a pipeline's attempts in one process
WRITERS = 8  # ledger writes in flight at once (update_each)


@dataclass
class _Copy:
    """One process's copy of a pipeline's attempts."""

    items: dict[str, JobAttempt]  # sort key -> attempt
    since: str  # the next read asks the index for the items written since (the last read - OVERLAP)
    read_at: float  # monotonic time of the last full read

    def take(self, attempt: JobAttempt) -> None:
        """Keep ``attempt`` unless the copy holds a later write of the same item (call under ``_LOCK``)."""
        item = sort_key(attempt.shard, attempt.attempt)
        held = self.items.get(item)
        if held is None or (attempt.updated_at or "") >= (held.updated_at or ""):
            self.items[item] = attempt

    def attempts(self) -> list[JobAttempt]:
        return [self.items[k] for k in sorted(self.items)]


_COPIES: dict[tuple[str, str, str], _Copy] = {}
_INDEXED: dict[tuple[str, str], bool] = {}
_LOCK = threading.Lock()
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _writers() -> ThreadPoolExecutor:
    """This process's writer threads (kept: each holds its own table resource, made once: ``shared``)."""
    global _POOL
    with _LOCK:
        if _POOL is None or _POOL[0] != os.getpid():  # a forked child does not inherit the threads
            _POOL = (os.getpid(), ThreadPoolExecutor(WRITERS, thread_name_prefix="bedrock-assets-ledger"))
        return _POOL[1]


class JobLedger:
    """Attempts keyed by (pipeline, "<shard>#<attempt>"), so one Query lists a pipeline's jobs."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def _where(self) -> tuple[str, str]:
        return (str(getattr(self.table.meta.client.meta, "endpoint_url", "")), self.table.name)

    def _indexed(self) -> bool:
        where = self._where()
        if where not in _INDEXED:
            indexes = self.table.meta.client.describe_table(TableName=self.table.name)["Table"].get(
                "GlobalSecondaryIndexes", []
            )
            _INDEXED[where] = any(i["IndexName"] == BY_UPDATE and i.get("IndexStatus") == "ACTIVE" for i in indexes)
        return _INDEXED[where]

    def current_attempts(self, pipeline: str) -> list[JobAttempt]:
        """What ``attempts_of`` gives, for a caller that asks again and again (the completion tick): after a
        full read, the items written since, through the by_update index (eventually consistent: another
        process's write shows within a tick or two; this process's own writes at once)."""
        key = (*self._where(), pipeline)
        copy = _COPIES.get(key)
        # a write this process's clock places before (this read - OVERLAP) is in the index by the next read
        started, since = time.monotonic(), (datetime.now(UTC) - OVERLAP).isoformat(timespec="seconds")
        if copy is None or started - copy.read_at >= FULL_EVERY or not self._indexed():
            attempts = self.attempts_of(pipeline)
            with _LOCK:
                copy = _COPIES[key] = _Copy({sort_key(a.shard, a.attempt): a for a in attempts}, since, started)
                return copy.attempts()
        written = self._query(Key("pipeline").eq(pipeline) & Key("updated_at").gte(copy.since), index=BY_UPDATE)
        with _LOCK:
            for a in written:
                copy.take(a)
            copy.since = since
            return copy.attempts()

    def _written(self, attempt: JobAttempt) -> None:
        """This process's own write, in its copy at once."""
        copy = _COPIES.get((*self._where(), attempt.pipeline))
        if copy is not None:
            with _LOCK:
                copy.take(attempt)

    def attempts(self, pipeline: str, shard: str) -> list[JobAttempt]:
        return self._query(Key("pipeline").eq(pipeline) & Key("shard_attempt").begins_with(f"{shard}#"))

    def latest(self, pipeline: str, shard: str) -> JobAttempt | None:
        items = self.attempts(pipeline, shard)
        return items[-1] if items else None

    def latest_of(self, pipeline: str, shards: Sequence[str]) -> dict[str, JobAttempt]:
        """The latest attempt of each of ``shards`` that has one, in one query (paged) over the sort keys from the
        first shard to the last: a run over a range of consecutive shards reads its attempts once, not a query
        per shard. Shards between them that were not asked for are left out."""
        if not shards:
            return {}
        wanted = set(shards)
        low, high = min(wanted), max(wanted)  # "#" sorts below every digit, "~" above: all of a shard's attempts
        found = self._query(Key("pipeline").eq(pipeline) & Key("shard_attempt").between(f"{low}#", f"{high}#~"))
        return {shard: a for shard, a in latest_by_shard(found).items() if shard in wanted}

    def attempts_of(self, pipeline: str) -> list[JobAttempt]:
        """Every attempt of a pipeline, in (shard, attempt) order."""
        return self._query(Key("pipeline").eq(pipeline))

    def latest_by_shard(self, pipeline: str) -> dict[str, JobAttempt]:
        return latest_by_shard(self.attempts_of(pipeline))

    def create(self, attempt: JobAttempt) -> JobAttempt:
        """Insert a new attempt; LedgerConflict if that attempt already exists."""
        attempt = replace(attempt, created_at=attempt.created_at or now_iso(), updated_at=now_iso())
        try:
            self.table.put_item(Item=attempt.to_item(), ConditionExpression=Attr("shard_attempt").not_exists())
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LedgerConflict(f"{attempt.pipeline}/{sort_key(attempt.shard, attempt.attempt)} exists") from None
            raise
        self._written(attempt)
        return attempt

    def update(
        self,
        attempt: JobAttempt,
        *,
        expect_status: tuple[JobStatus, ...] | None = None,
        expect_updated_at: str | None = None,
        **changes: Any,
    ) -> JobAttempt:
        """Set fields on an attempt and return it updated; with ``expect_status`` only from one of those
        statuses, with ``expect_updated_at`` only if nobody wrote it since."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise TypeError(f"JobAttempt fields {sorted(unknown)} cannot be updated")
        changes["updated_at"] = now_iso()
        # boto3 names the condition's placeholders #n0/:v0...: ours must not collide with them
        names = {f"#set{i}": k for i, k in enumerate(changes)}
        values = {f":set{i}": _stored(v) for i, v in enumerate(changes.values())}
        condition = Attr("shard_attempt").exists()
        if expect_status:
            condition = condition & Attr("status").is_in([s.value for s in expect_status])
        if expect_updated_at:
            condition = condition & Attr("updated_at").eq(expect_updated_at)
        try:
            self.table.update_item(
                Key={"pipeline": attempt.pipeline, "shard_attempt": sort_key(attempt.shard, attempt.attempt)},
                UpdateExpression="SET " + ", ".join(f"#set{i} = :set{i}" for i in range(len(changes))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ConditionExpression=condition,
            )
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LedgerConflict(
                    f"{attempt.pipeline}/{sort_key(attempt.shard, attempt.attempt)}: status not in {expect_status}"
                ) from None
            raise
        updated = replace(attempt, **changes)
        self._written(updated)  # (fields no condition covered are as the caller had them: the index corrects them)
        return updated

    def update_each(self, changes: Sequence[tuple[JobAttempt, dict[str, Any]]]) -> list[JobAttempt]:
        """``update`` for many attempts at once (a poll that saw hundreds of jobs finish), ``WRITERS`` at a time:
        each write waits on a round trip, not on this process (in order; the first error raised)."""
        if len(changes) <= 1:
            return [self.update(a, **c) for a, c in changes]
        return list(_writers().map(lambda change: self.update(change[0], **change[1]), changes))

    def _query(self, condition: Any, index: str | None = None) -> list[JobAttempt]:
        attempts: list[JobAttempt] = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition}
        kwargs.update({"IndexName": index} if index else {"ConsistentRead": True})  # an index reads eventually
        while True:
            page = self.table.query(**kwargs)
            attempts.extend(JobAttempt.from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return attempts
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class JobLedgerResource(ResourceWithBoto3Configuration):
    """DynamoDB job ledger. The table is created on first use when ``create_if_missing`` (once per process)."""

    table_name: str = Field(default="bedrock-assets-jobs", description="DynamoDB table name")
    create_if_missing: bool = Field(default=True, description="create the table (PAY_PER_REQUEST) if it is missing")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """A run that uses the ledger holds claims and shards: it is marked with the process executing it, so
        whoever finds it unfinished can tell whether that process still lives (``processes.release_dead_runs``)."""
        from bedrock_assets.processes import own_run  # processes -> keys -> shards -> ledger

        own_run(context.instance, context.run)

    def get_client(self) -> Any:
        """The DynamoDB client."""
        return shared("dynamodb", self, lambda: boto3_session(self).client("dynamodb", **client_args(self)))

    def get_ledger(self) -> JobLedger:
        dynamodb = shared(
            "dynamodb-resource",
            self,
            lambda: boto3_session(self).resource("dynamodb", **client_args(self)),
            per_thread=True,
        )
        if self.create_if_missing:  # once per process for this table, endpoint and region
            shared("ledger-table-exists", self, lambda: ensure_table(self.get_client(), self.table_name))
        return JobLedger(dynamodb.Table(self.table_name))


TABLE_KEYS = [{"AttributeName": "pipeline", "KeyType": "HASH"}, {"AttributeName": "shard_attempt", "KeyType": "RANGE"}]
TABLE_ATTRIBUTES = [
    {"AttributeName": "pipeline", "AttributeType": "S"},
    {"AttributeName": "shard_attempt", "AttributeType": "S"},
]
BY_UPDATE_INDEX = {
    "IndexName": BY_UPDATE,
    "KeySchema": [
        {"AttributeName": "pipeline", "KeyType": "HASH"},
        {"AttributeName": "updated_at", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "ALL"},
}


def ensure_table(client: Any, name: str) -> bool:
    """Create the ledger table if it does not exist (a concurrent creation is fine) and wait for it; True."""
    try:
        client.describe_table(TableName=name)
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    try:
        client.create_table(
            TableName=name,
            KeySchema=TABLE_KEYS,
            AttributeDefinitions=[*TABLE_ATTRIBUTES, {"AttributeName": "updated_at", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[BY_UPDATE_INDEX],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceInUseException":  # created by a concurrent run
            raise
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return True
