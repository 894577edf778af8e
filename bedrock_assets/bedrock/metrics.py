"""A model's batch backlog across the account, from CloudWatch's ``AWS/Bedrock/Batch`` metrics.

Bedrock publishes per ``ModelId``: ``NumberOfRecordsPendingProcessing``,
``NumberOfInputTokensProcessedPerMinute`` and ``NumberOfOutputTokensProcessedPerMinute``
(https://aws.amazon.com/blogs/machine-learning/monitor-amazon-bedrock-batch-inference-using-amazon-cloudwatch-metrics/;
AWS's own SLA sample alarms on pending > 0 while no token is processed). They are the account-wide
view: jobs of other pipelines and other people share the queue. One ``GetMetricData`` call reads all
three; without the ``cloudwatch:GetMetricData`` permission, or before the model has data, the backlog
is a note, never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

NAMESPACE = "AWS/Bedrock/Batch"
METRICS = {
    "pending": "NumberOfRecordsPendingProcessing",
    "input_tpm": "NumberOfInputTokensProcessedPerMinute",
    "output_tpm": "NumberOfOutputTokensProcessedPerMinute",
}
WINDOW = timedelta(minutes=15)  # the latest datapoint within this window counts
PERIOD_SECONDS = 60


@dataclass(frozen=True)
class Backlog:
    """The latest batch metrics of one model (None where there was no datapoint), or why there are none."""

    model_id: str
    pending_records: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    note: str | None = None
    tokens_in_window: float | None = None  # the most tokens of any minute in the window (None: no token data)

    @property
    def moving(self) -> bool | None:
        """Whether the account's batch queue for the model processed tokens in the window (None: not known).
        The window, not the latest minute alone: a quiet minute between two jobs' ends is not a stopped queue."""
        if self.tokens_in_window is None:
            return None
        return self.tokens_in_window > 0

    def drain_time(self, input_tokens_per_record: float | None) -> timedelta | None:
        """How long the pending records take at the current token rate (None: not known)."""
        if not self.pending_records or not self.input_tokens_per_minute or not input_tokens_per_record:
            return None
        records_per_minute = self.input_tokens_per_minute / input_tokens_per_record
        return timedelta(minutes=self.pending_records / records_per_minute)

    def text(self) -> str:
        if self.note:
            return f"model backlog: {self.note}"
        pending = f"{self.pending_records:,.0f}" if self.pending_records is not None else "?"
        rate = f"{self.input_tokens_per_minute:,.0f}" if self.input_tokens_per_minute is not None else "?"
        return f"model backlog (account-wide): {pending} records pending, {rate} input tokens/min"

    def metadata(self) -> dict[str, Any]:
        if self.note:
            return {"backlog_note": self.note}
        values = {
            "backlog_records_pending": self.pending_records,
            "backlog_input_tokens_per_minute": self.input_tokens_per_minute,
            "backlog_output_tokens_per_minute": self.output_tokens_per_minute,
        }
        return {k: round(v, 2) for k, v in values.items() if v is not None}


def read_backlog(client: Any, model_id: str, now: datetime) -> Backlog:
    """The model's latest batch metrics with one GetMetricData call; a note when they cannot be read."""
    queries = [
        {
            "Id": key,
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": name,
                    "Dimensions": [{"Name": "ModelId", "Value": model_id}],
                },
                "Period": PERIOD_SECONDS,
                "Stat": "Average",
            },
            "ReturnData": True,
        }
        for key, name in METRICS.items()
    ]
    try:
        answer = client.get_metric_data(
            MetricDataQueries=queries, StartTime=now - WINDOW, EndTime=now, ScanBy="TimestampDescending"
        )
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return Backlog(
                model_id, note="not read: this role lacks cloudwatch:GetMetricData (see the README's IAM policy)"
            )
        return Backlog(model_id, note=f"not read: CloudWatch answered {code or 'an error'}")
    except BotoCoreError as e:
        return Backlog(model_id, note=f"not read: {type(e).__name__}")
    results = {r["Id"]: r["Values"] for r in answer.get("MetricDataResults", []) if r.get("Values")}
    if not results:
        return Backlog(model_id, note=f"no {NAMESPACE} data for {model_id} in the last {WINDOW.seconds // 60} minutes")
    latest = {key: values[0] for key, values in results.items()}
    tokens = [max(results[k]) for k in ("input_tpm", "output_tpm") if k in results]
    return Backlog(
        model_id,
        latest.get("pending"),
        latest.get("input_tpm"),
        latest.get("output_tpm"),
        None,
        max(tokens, default=None),
    )
