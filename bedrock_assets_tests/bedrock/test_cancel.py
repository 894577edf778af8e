"""Stopping a pipeline's jobs: what is in flight is stopped, what is queued dequeued, what finished is left as it is."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from bedrock_assets.bedrock.cancel import StopReport, stop_jobs
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.ledger import JobAttempt
from bedrock_assets_tests.helpers import job


class Ledger:
    """The ledger calls stop_jobs makes, in memory."""

    def __init__(self, attempts: list[JobAttempt]) -> None:
        self.items = {a.shard: a for a in attempts}

    def latest_by_shard(self, pipeline: str) -> dict[str, JobAttempt]:
        return dict(self.items)

    def update(self, attempt: JobAttempt, expect_status: Any = None, **changes: Any) -> JobAttempt:
        self.items[attempt.shard] = replace(attempt, **changes)
        return self.items[attempt.shard]


class Bedrock:
    def __init__(self, finished: set[str]) -> None:
        self.finished, self.stopped = finished, []

    def get_client(self) -> Any:
        return self

    def stop_model_invocation_job(self, jobIdentifier: str) -> None:
        if jobIdentifier in self.finished:  # the service: a job that already ended cannot be stopped
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "ended"}}, "Stop")
        self.stopped.append(jobIdentifier)


def test_each_job_is_stopped_dequeued_or_left_and_the_report_says_which():
    ledger = Ledger(
        [
            job("s00000", JobStatus.IN_PROGRESS, arn="arn:a"),
            job("s00001", JobStatus.SCHEDULED, arn="arn:b"),  # ended meanwhile
            job("s00002", JobStatus.QUEUED, arn=None),
            job("s00003", JobStatus.COMPLETED, arn="arn:d"),
            job("s00004", JobStatus.SUBMITTING, arn=None),
        ]
    )
    bedrock = Bedrock(finished={"arn:b"})
    report = stop_jobs(bedrock, ledger, "p", None)  # type: ignore[arg-type]
    assert bedrock.stopped == ["arn:a"]
    assert (report.stopped, report.dequeued, report.finished, report.in_submission) == (
        ["s00000"],
        ["s00002"],
        ["s00001", "s00003"],
        ["s00004"],
    )
    assert ledger.items["s00000"].status is JobStatus.STOPPING and ledger.items["s00002"].status is JobStatus.STOPPED
    assert report.line("p") == (
        "[p] stopped 1 job(s), dequeued 1 shard(s), 2 already finished; 1 being submitted right now (s00004): "
        "run stop again in a minute"
    )


def test_only_the_named_shards_are_stopped_and_unknown_ones_are_named():
    ledger = Ledger(
        [job("s00000", JobStatus.IN_PROGRESS, arn="arn:a"), job("s00001", JobStatus.IN_PROGRESS, arn="arn:b")]
    )
    bedrock = Bedrock(finished=set())
    report = stop_jobs(bedrock, ledger, "p", ["s00001", "s00009"])  # type: ignore[arg-type]
    assert bedrock.stopped == ["arn:b"] and report.unknown == ["s00009"]
    assert report.line("p").endswith("; no job for s00009") and StopReport().line("p").startswith("[p] stopped 0")
