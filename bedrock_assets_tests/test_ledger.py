"""The job ledger: typed attempts in DynamoDB, conditional writes so racing runs claim a submission once."""

from __future__ import annotations

import threading
import uuid

import boto3
import pytest

from bedrock_assets import ledger as ledger_module
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.ledger import (
    BY_UPDATE,
    TABLE_ATTRIBUTES,
    TABLE_KEYS,
    JobAttempt,
    JobCounts,
    JobLedger,
    JobLedgerResource,
    LedgerConflict,
)


@pytest.fixture
def ledger(stack):
    return JobLedgerResource(table_name=f"ledger-{uuid.uuid4().hex[:8]}").get_ledger()


def attempt(shard: str = "s00000", n: int = 1) -> JobAttempt:
    return JobAttempt(
        pipeline="p",
        shard=shard,
        attempt=n,
        job_name=f"p-{shard}-abc" + (f"-a{n}" if n > 1 else ""),
        input_digest="d" * 64,
        model_id="m",
        records=150,
        input_uri="s3://b/in",
        output_uri="s3://b/out",
    )


def test_an_attempt_round_trips_with_its_types(ledger):
    created = ledger.create(attempt())
    updated = ledger.update(
        created,
        status=JobStatus.PARTIALLY_COMPLETED,
        job_arn="arn:j",
        counts=JobCounts(150, 150, 148, 2),
        input_tokens=1200,
    )
    read = ledger.latest("p", "s00000")
    assert read == updated and read.status is JobStatus.PARTIALLY_COMPLETED and read.counts.errored == 2
    assert read.created_at and read.identity == "arn:j"


def test_latest_by_shard_takes_the_last_attempt(ledger):
    ledger.create(attempt("s00000", 1))
    ledger.create(attempt("s00000", 2))
    ledger.create(attempt("s00001", 1))
    assert {k: a.attempt for k, a in ledger.latest_by_shard("p").items()} == {"s00000": 2, "s00001": 1}


def test_the_latest_attempts_of_a_range_of_shards_come_in_one_query(ledger, monkeypatch):
    for shard, n in [("s00001", 1), ("s00001", 2), ("s00002", 1), ("s00003", 1), ("s00004", 1), ("s000010", 1)]:
        ledger.create(attempt(shard, n))
    ledger.create(attempt("r1-00002", 1))  # a retry round's shard, outside the range
    queries = []
    query = ledger.table.query
    monkeypatch.setattr(ledger.table, "query", lambda **kw: queries.append(kw) or query(**kw))
    latest = ledger.latest_of("p", ["s00001", "s00002", "s00004"])
    assert {s: a.attempt for s, a in latest.items()} == {"s00001": 2, "s00002": 1, "s00004": 1}  # s00003: not asked
    assert len(queries) == 1
    assert ledger.latest_of("p", ["s00009"]) == {} and ledger.latest_of("p", []) == {}
    assert ledger.latest_of("p", ["s00001"]) == {"s00001": ledger.latest("p", "s00001")}


def test_an_attempt_is_created_once_and_claimed_once(ledger):
    first = ledger.create(attempt())
    with pytest.raises(LedgerConflict):
        ledger.create(attempt())
    claimed = ledger.update(first, expect_status=(JobStatus.QUEUED,), status=JobStatus.SUBMITTING)
    with pytest.raises(LedgerConflict):  # a racing run finds it claimed
        ledger.update(first, expect_status=(JobStatus.QUEUED,), status=JobStatus.SUBMITTING)
    assert claimed.status is JobStatus.SUBMITTING


def test_only_state_fields_can_change(ledger):
    created = ledger.create(attempt())
    with pytest.raises(TypeError, match="input_digest"):
        ledger.update(created, input_digest="other")


def test_many_updates_go_out_together_and_come_back_in_order(ledger, monkeypatch):
    created = [ledger.create(attempt(f"s{n:05d}")) for n in range(20)]
    threads: set[str] = set()
    real = JobLedger.update

    def update(self, a, **changes):
        threads.add(threading.current_thread().name)
        return real(self, a, **changes)

    monkeypatch.setattr(JobLedger, "update", update)
    changes = [
        (a, {"status": JobStatus.COMPLETED, "counts": JobCounts(150, 150, 150 - n, n)}) for n, a in enumerate(created)
    ]
    updated = ledger.update_each(changes)
    assert [a.shard for a in updated] == [a.shard for a in created]
    assert {k: a.counts.errored for k, a in ledger.latest_by_shard("p").items()} == {f"s{n:05d}": n for n in range(20)}
    assert len(threads) > 1 and all(t.startswith("bedrock-assets-ledger") for t in threads)
    with pytest.raises(LedgerConflict):  # an attempt that is not in the table: the error comes through
        ledger.update_each([(attempt("s00099"), {"status": JobStatus.FAILED}), *changes[:2]])


def test_a_repeated_read_costs_what_changed_and_sees_every_writer(stack, monkeypatch):
    """The completion tick's read: one full read, then only the items written since (the by_update index, less
    its overlap); another process's writes show, this process's own at once."""
    resource = JobLedgerResource(table_name=f"ledger-{uuid.uuid4().hex[:8]}")
    mine = resource.get_ledger()
    theirs = JobLedger(mine.table)  # another process: writes this process's copy does not see being made
    monkeypatch.setattr(theirs, "_written", lambda attempt: None)
    with monkeypatch.context() as m:
        m.setattr(ledger_module, "now_iso", lambda: "2026-01-01T00:00:00+00:00")  # written an hour ago
        for i in range(30):
            mine.create(attempt(f"s{i:05d}"))
    assert [a.shard for a in mine.current_attempts("p")] == [f"s{i:05d}" for i in range(30)]
    reads: list[tuple[str | None, int]] = []
    query = JobLedger._query

    def counted(self: JobLedger, condition: object, index: str | None = None) -> list[JobAttempt]:
        found = query(self, condition, index)
        reads.append((index, len(found)))
        return found

    monkeypatch.setattr(JobLedger, "_query", counted)
    theirs.update(mine.latest("p", "s00007"), status=JobStatus.COMPLETED)
    reads.clear()
    assert {a.shard: a.status for a in mine.current_attempts("p")}["s00007"] is JobStatus.COMPLETED
    assert reads == [(BY_UPDATE, 1)]  # the 30 were written long before the last read: only s00007
    theirs.update(mine.latest("p", "s00003"), status=JobStatus.FAILED)
    reads.clear()
    assert {a.shard: a.status for a in mine.current_attempts("p")}["s00003"] is JobStatus.FAILED
    assert reads == [(BY_UPDATE, 2)]  # written within the overlap of the last read: s00007 again, s00003
    mine.update(mine.latest("p", "s00011"), status=JobStatus.STOPPED)  # (latest: one consistent read)
    reads.clear()
    assert {a.shard: a.status for a in mine.current_attempts("p")}["s00011"] is JobStatus.STOPPED
    assert [index for index, _ in reads] == [BY_UPDATE]


def test_a_table_without_the_index_is_read_whole_every_time(stack):
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=name, KeySchema=TABLE_KEYS, AttributeDefinitions=TABLE_ATTRIBUTES, BillingMode="PAY_PER_REQUEST"
    )  # a table made before the index
    mine = JobLedgerResource(table_name=name).get_ledger()
    theirs = JobLedger(mine.table)
    theirs._written = lambda attempt: None  # type: ignore[method-assign]
    mine.create(attempt("s00000"))
    assert [a.status for a in mine.current_attempts("p")] == [JobStatus.QUEUED]
    theirs.update(mine.latest("p", "s00000"), status=JobStatus.COMPLETED)
    assert [a.status for a in mine.current_attempts("p")] == [JobStatus.COMPLETED]


def test_a_run_over_many_shards_reads_the_ledger_once_per_stage_not_once_per_shard(
    make_pipelines, instance, bucket, monkeypatch
):
    """The ledger queries of a whole pipeline (each stage one run over all its shards) do not grow with the
    shards: the submit and merge runs read their shards' attempts in one query each (``latest_of``)."""
    import botocore.client

    from bedrock_assets_tests.helpers import pipeline_dict, run

    queries = {"n": 0}
    call = botocore.client.BaseClient._make_api_call

    def counted(client, operation, params):
        if client.meta.service_model.service_name == "dynamodb" and operation == "Query":
            queries["n"] += 1
        return call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)
    made = {}
    for shards, name in ((2, "few"), (6, "many")):
        defs, (spec,) = make_pipelines(
            [pipeline_dict(name, bucket, shards={"max_records": 100}, canary={"records": 0})], rows=100 * shards
        )
        queries["n"] = 0
        assert run(defs, spec, instance).succeeded == 100 * shards
        made[shards] = queries["n"]
    assert made[6] == made[2]
