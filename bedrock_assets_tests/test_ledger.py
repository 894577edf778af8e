"""The job ledger: typed attempts in DynamoDB, conditional writes so racing runs claim a submission once."""

from __future__ import annotations

import uuid

import pytest

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.ledger import JobAttempt, JobCounts, JobLedgerResource, LedgerConflict


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
