"""The model's account-wide batch backlog from CloudWatch: read once per poll, a note when it cannot be."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.metrics import Backlog, read_backlog
from bedrock_assets.deadline import stall_reason
from bedrock_assets.local_stack import LocalStack
from bedrock_assets_tests.helpers import job
from bedrock_assets_tests.local_stack.test_runtime import batch_outputs

# a model no other test runs jobs of: the metrics are account-wide, this test's alone
MODEL = "anthropic.claude-3-opus-20240229-v1:0"


class Refusing:
    def __init__(self, code: str) -> None:
        self.code = code

    def get_metric_data(self, **_: Any) -> dict:
        raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "GetMetricData")


def test_the_local_stack_publishes_the_batch_metrics_and_one_call_reads_them(stack: LocalStack) -> None:
    stack.configure(metrics_seconds=0)
    prompt = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50}
    bodies = [{**prompt, "messages": [{"role": "user", "content": f"question {i}"}]} for i in range(100)]
    batch_outputs(stack, MODEL, bodies)
    stack.client("bedrock").list_model_invocation_jobs()  # the emulator publishes when it is asked
    backlog = read_backlog(stack.client("cloudwatch"), MODEL, datetime.now(UTC) + timedelta(seconds=1))
    assert backlog.note is None and backlog.pending_records == 0  # the job is done: nothing pending
    assert backlog.input_tokens_per_minute and backlog.input_tokens_per_minute > 0 and backlog.moving
    assert backlog.text().startswith("model backlog (account-wide): 0 records pending, ")


def test_missing_permission_or_no_data_is_a_note_never_a_failure(stack: LocalStack) -> None:
    now = datetime.now(UTC)
    denied = read_backlog(Refusing("AccessDeniedException"), MODEL, now)
    assert denied.note and "cloudwatch:GetMetricData" in denied.note and denied.moving is None
    assert read_backlog(Refusing("Throttling"), MODEL, now).note == "not read: CloudWatch answered Throttling"
    empty = read_backlog(stack.client("cloudwatch"), "amazon.titan-text-lite-v1", now)
    assert empty.note == "no AWS/Bedrock/Batch data for amazon.titan-text-lite-v1 in the last 15 minutes"
    assert empty.metadata() == {"backlog_note": empty.note}


def test_a_backlog_drains_at_its_token_rate_and_a_moving_queue_is_no_stall() -> None:
    backlog = Backlog("m", pending_records=3000, input_tokens_per_minute=60_000, output_tokens_per_minute=0)
    assert backlog.drain_time(input_tokens_per_record=200) == timedelta(minutes=10)  # 300 records/min
    assert backlog.drain_time(None) is None
    now = datetime(2026, 12, 2, tzinfo=UTC)
    waiting = replace(job("s0", JobStatus.SCHEDULED), submitted_at=(now - timedelta(hours=2)).isoformat())
    hour = timedelta(hours=1)
    assert stall_reason(waiting, now, hour, backlog_moving=True) is None  # a queue that moves: just waiting
    assert stall_reason(waiting, now, hour, backlog_moving=False) == (
        "Scheduled for 2h00m while the model's batch queue does not move"
    )
    assert stall_reason(waiting, now, hour) == "Scheduled for 2h00m"  # no metrics: by age alone


class Answering:
    """GetMetricData's answer: each metric's values, latest first (ScanBy TimestampDescending)."""

    def __init__(self, **values: list[float]) -> None:
        self.values = values

    def get_metric_data(self, **_: Any) -> dict:
        return {"MetricDataResults": [{"Id": k, "Values": v} for k, v in self.values.items()]}


def test_a_quiet_latest_minute_after_tokens_in_the_window_is_still_a_moving_queue() -> None:
    now = datetime.now(UTC)
    quiet_now = read_backlog(Answering(pending=[100, 100], input_tpm=[0, 0, 4000], output_tpm=[0, 0, 900]), MODEL, now)
    assert quiet_now.input_tokens_per_minute == 0 and quiet_now.pending_records == 100  # the latest minute
    assert quiet_now.moving is True  # but the queue processed tokens within the window
    stopped = read_backlog(Answering(pending=[100], input_tpm=[0, 0], output_tpm=[0]), MODEL, now)
    assert stopped.moving is False
    assert read_backlog(Answering(pending=[100]), MODEL, now).moving is None  # no token data: not known
