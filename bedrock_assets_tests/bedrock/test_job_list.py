"""The account's job list kept per client: after a full list, only the jobs that can have changed are listed."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bedrock_assets.bedrock import job_list
from bedrock_assets.bedrock.job_list import OVERLAP, JobList
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.resource import LOOKBACK, BedrockBatchResource, CallCounter, JobSummary
from bedrock_assets.local_stack import LocalStack
from bedrock_assets_tests.local_stack.helpers import CLAUDE, claude_records, create_job, put_jsonl, uid, wait_terminal

NOW = datetime.now(UTC)  # set again at each test's start (below): a worker may reach a test minutes after import


@pytest.fixture(autouse=True)
def _now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "NOW", datetime.now(UTC))


def job(n: int, status: JobStatus, minutes_ago: float) -> JobSummary:
    return JobSummary(f"arn:{n}", f"j{n}", CLAUDE, status, submit_time=NOW - timedelta(minutes=minutes_ago))


class Account:
    """A fake list: the jobs submitted after a time (what ``submitTimeAfter`` asks for), each ask recorded."""

    def __init__(self, jobs: list[JobSummary]) -> None:
        self.jobs = {j.job_arn: j for j in jobs}
        self.asked: list[datetime] = []

    def fetch(self, after: datetime) -> list[JobSummary]:
        self.asked.append(after)
        return [j for j in self.jobs.values() if j.submit_time is None or j.submit_time >= after]


def test_after_a_full_list_only_jobs_since_the_oldest_open_one_are_listed_and_finished_ones_are_kept():
    account = Account(
        [job(1, JobStatus.COMPLETED, 600), job(2, JobStatus.FAILED, 300), job(3, JobStatus.IN_PROGRESS, 90)]
    )
    jobs = JobList()
    assert {j.job_arn for j in jobs.listed(LOOKBACK, account.fetch)} == {"arn:1", "arn:2", "arn:3"}
    assert account.asked[0] < NOW - LOOKBACK + timedelta(minutes=1)  # the whole window
    account.jobs["arn:3"] = job(3, JobStatus.COMPLETED, 90)
    account.jobs["arn:4"] = job(4, JobStatus.SUBMITTED, 0)
    second = {j.job_arn: j.status for j in jobs.listed(LOOKBACK, account.fetch)}
    assert second == {
        "arn:1": JobStatus.COMPLETED,
        "arn:2": JobStatus.FAILED,
        "arn:3": JobStatus.COMPLETED,
        "arn:4": JobStatus.SUBMITTED,
    }
    asked = account.asked[1]
    assert NOW - timedelta(minutes=92) < asked < NOW - timedelta(minutes=90) + timedelta(seconds=1) - OVERLAP
    jobs.listed(LOOKBACK, account.fetch)  # every job open at the last list is younger: only the last minute or so
    assert account.asked[2] == NOW - OVERLAP  # the youngest open job's submit time, less the overlap


def test_a_job_the_list_no_longer_shows_in_its_range_is_dropped_and_a_full_list_comes_back_after_a_while(monkeypatch):
    account = Account([job(1, JobStatus.COMPLETED, 600), job(2, JobStatus.SCHEDULED, 30)])
    jobs = JobList()
    jobs.listed(LOOKBACK, account.fetch)
    del account.jobs["arn:2"]
    assert [j.job_arn for j in jobs.listed(LOOKBACK, account.fetch)] == ["arn:1"]  # older than asked: kept
    clock = job_list.time.monotonic()
    monkeypatch.setattr(job_list.time, "monotonic", lambda: clock + job_list.FULL_EVERY + 1)
    del account.jobs["arn:1"]
    assert jobs.listed(LOOKBACK, account.fetch) == []
    assert account.asked[-1] < NOW - LOOKBACK + timedelta(minutes=1)


def test_an_open_job_without_a_submit_time_makes_every_list_full():
    account = Account([JobSummary("arn:x", "x", CLAUDE, JobStatus.IN_PROGRESS)])
    jobs = JobList()
    jobs.listed(LOOKBACK, account.fetch)
    jobs.listed(LOOKBACK, account.fetch)
    assert all(a < NOW - LOOKBACK + timedelta(minutes=1) for a in account.asked)


def test_the_resource_lists_what_a_full_list_shows_on_the_local_stack(stack: LocalStack, s3: Any, bucket: str):
    bedrock, resource = stack.client("bedrock"), BedrockBatchResource()
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    first = create_job(bedrock, bucket, jobName=uid("listed"))
    calls = CallCounter()
    assert first in {j.job_arn for j in resource.recent_jobs(bedrock, calls)}
    wait_terminal(bedrock, first)
    second = create_job(bedrock, bucket, jobName=uid("listed"))
    kept = {j.job_arn: j.status for j in resource.recent_jobs(bedrock, calls)}
    full = {
        j["jobArn"]: j["status"] for j in bedrock.list_model_invocation_jobs(maxResults=1000)["invocationJobSummaries"]
    }
    assert kept == {a: JobStatus(s) for a, s in full.items()}
    assert kept[first] is JobStatus.COMPLETED and second in kept
    assert calls.calls == {"ListModelInvocationJobs": 2}
