"""Stopping a pipeline's jobs: StopModelInvocationJob for every job in flight, queued shards dequeued.

Each is recorded in the ledger (a stopped job goes Stopping, then Stopped when the sensor polls it; a
dequeued shard goes straight to Stopped with no job), so nothing is resubmitted: a Stopped job never
is. Whatever a stopped job already produced is read and merged like any output; its other records
end as ``JobStopped`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter
from bedrock_assets.ledger import JobAttempt, JobLedger, LedgerConflict, now_iso

STOPPED_BY_USER = "stopped by a person (bedrock-assets stop or the __stop job)"
PERSON = "person"  # JobAttempt.stopped_by of a job a person stopped


@dataclass
class StopReport:
    stopped: list[str] = field(default_factory=list)  # shards whose job we asked Bedrock to stop
    dequeued: list[str] = field(default_factory=list)  # queued shards that will not be submitted
    in_submission: list[str] = field(default_factory=list)  # a submitter holds them right now: stop again
    finished: list[str] = field(default_factory=list)  # already in a terminal state: nothing to stop
    unknown: list[str] = field(default_factory=list)  # asked for, but the pipeline has no job for them

    def line(self, pipeline: str) -> str:
        again = (
            f"; {len(self.in_submission)} being submitted right now ({', '.join(self.in_submission[:5])}): "
            "run stop again in a minute"
            if self.in_submission
            else ""
        )
        unknown = f"; no job for {', '.join(self.unknown)}" if self.unknown else ""
        return (
            f"[{pipeline}] stopped {len(self.stopped)} job(s), dequeued {len(self.dequeued)} shard(s), "
            f"{len(self.finished)} already finished{again}{unknown}"
        )


def stop_jobs(
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    pipeline: str,
    shards: Sequence[str] | None = None,
    counter: CallCounter | None = None,
) -> StopReport:
    """Stop the in-flight jobs and dequeue the queued shards of a pipeline (or of the given shards)."""
    report = StopReport()
    latest = ledger.latest_by_shard(pipeline)
    chosen = [a for key, a in sorted(latest.items()) if shards is None or key in shards]
    report.unknown = [s for s in shards or [] if s not in latest]
    client = None
    for attempt in chosen:
        if attempt.job_arn and attempt.status.holds_slot:
            client = client or bedrock.get_client()
            if stop_job(client, ledger, attempt, STOPPED_BY_USER, counter, stopped_by=PERSON) is None:
                report.finished.append(attempt.shard)
            else:
                report.stopped.append(attempt.shard)
        elif attempt.status is JobStatus.QUEUED:
            try:
                ledger.update(
                    attempt,
                    expect_status=(JobStatus.QUEUED,),
                    status=JobStatus.STOPPED,
                    message=f"dequeued: {STOPPED_BY_USER}",
                    end_time=now_iso(),
                )
                report.dequeued.append(attempt.shard)
            except LedgerConflict:
                report.in_submission.append(attempt.shard)
        elif attempt.status is JobStatus.SUBMITTING:
            report.in_submission.append(attempt.shard)
        else:
            report.finished.append(attempt.shard)
    return report


def stop_job(
    client: Any,
    ledger: JobLedger,
    attempt: JobAttempt,
    message: str,
    counter: CallCounter | None = None,
    stopped_by: str | None = None,
) -> JobAttempt | None:
    """StopModelInvocationJob for one attempt's job, recorded Stopping; None if the job had finished meanwhile."""
    if not request_stop(client, attempt.job_arn or "", counter):
        return None
    return ledger.update(attempt, status=JobStatus.STOPPING, message=message, stopped_by=stopped_by)


def request_stop(client: Any, job_arn: str, counter: CallCounter | None = None) -> bool:
    """StopModelInvocationJob; False if the job had already ended (Bedrock answers ValidationException)."""
    if counter:
        counter.add("StopModelInvocationJob")
    try:
        client.stop_model_invocation_job(jobIdentifier=job_arn)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ValidationException":
            raise
        return False
    return True


RESUMED = "queued again: the pipeline was resumed"


def resume_shards(ledger: JobLedger, pipeline: str) -> list[str]:
    """Queue again the shards a stop left without a job (dequeued, or not submitted while stopped); the
    completion sensor submits them. Jobs a stop stopped keep their outcome (what they answered is merged;
    ``resubmit_failed`` on batch_jobs makes a new attempt)."""
    resumed = []
    for shard, attempt in sorted(ledger.latest_by_shard(pipeline).items()):
        if attempt.status is JobStatus.STOPPED and not attempt.job_arn:
            try:
                ledger.update(
                    attempt, expect_status=(JobStatus.STOPPED,), status=JobStatus.QUEUED, queued_at=now_iso(),
                    message=RESUMED,
                )  # fmt: skip
                resumed.append(shard)
            except LedgerConflict:
                pass
    return resumed
