"""Quota-aware, idempotent job submission: decide per shard, then carry the decisions out.

``decide_submissions`` is the whole decision and touches nothing: which shards re-attach to the job
they have, which attach to a job found by name (created before a crash), which wait for a slot and
which are created now. ``submit_shards`` reads the ledger and Bedrock once, decides, and applies the
decisions with conditional ledger writes, so racing runs create each job at most once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bedrock_assets.bedrock.budget import Budget
from bedrock_assets.bedrock.error_classes import job_failure_is_transient
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import attempts_in, job_name
from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter, JobSummary, slots_in_use
from bedrock_assets.errors import is_transient
from bedrock_assets.ledger import JobAttempt, JobCounts, JobLedger, LedgerConflict, now_iso
from bedrock_assets.processes import OWNER, owner_alive
from bedrock_assets.shards import round_of

# A submission claim of another host older than this was left by a submitter that is gone (one of this host
# is known gone at once: its process no longer runs).
CLAIM_LEASE = timedelta(seconds=60)
# Bedrock refused for lack of capacity: the shard waits for a slot instead of failing.
_WAIT_CODES = ("ServiceQuotaExceededException", "ThrottlingException")
NO_SLOT = "no free slot for this model"


@dataclass(frozen=True)
class ShardToSubmit:
    shard: str
    digest: str  # sha256 of the shard's JSONL input
    records: int
    input_uri: str
    output_uri: str
    worst_usd: float | None = None  # the most its job can cost; None when the model has no price


@dataclass(frozen=True)
class JobSettings:
    """What every job of one pipeline is submitted with."""

    pipeline: str
    prefix: str
    model_id: str
    invocation_type: str
    role_arn: str | None
    timeout_hours: int
    tags: Mapping[str, str]
    quotas: BatchQuotas
    expected_bucket_owner: str | None = None
    kms_key_id: str | None = None
    max_job_attempts: int = 1
    budget: Budget | None = None  # None: no budget_usd
    service_tier: str = "default"  # of the runtime API, for what is answered on demand


def resubmitted_automatically(latest: JobAttempt, max_job_attempts: int) -> bool:
    """The resubmission policy: a first-pass job that Expired, or Failed for a transient reason, having
    processed nothing, gets a new attempt while the shard has had fewer than ``max_job_attempts``; a
    Stopped job never does (a person stopped it). A job that processed records is merged instead: what
    it answered is kept and the rest goes to the retry rounds, so nothing answered is paid for twice. A
    retry round's job is not renewed: its records go to the next round, so a failure that only looks
    transient costs at most one job per round (``retry.max_rounds``), not ``max_job_attempts`` per round."""
    return (
        round_of(latest.shard) == 0
        and latest.attempt < max_job_attempts
        and latest.counts.processed == 0
        and job_failure_is_transient(latest.status, latest.message)
    )


class Action(StrEnum):
    REATTACH = "re-attach"  # the ledger already has a live or finished job for this input
    ATTACH_FOUND = "attach"  # Bedrock has a job of this name for this input, the ledger does not
    NAME_TAKEN = "name taken"  # Bedrock has a job of this name reading another input
    QUEUE = "queue"  # no free slot: wait in the ledger for the completion sensor
    CREATE = "create"  # a new (paid) job


@dataclass(frozen=True)
class Decision:
    shard: ShardToSubmit
    action: Action
    attempt: int
    job_name: str
    found: JobSummary | None = None
    reason: str = ""


def decide(
    shard: ShardToSubmit,
    latest: JobAttempt | None,
    jobs_by_name: Mapping[str, JobSummary],
    free_slots: int,
    prefix: str,
    resubmit: bool = False,
    max_job_attempts: int = 1,
) -> Decision:
    """What to do for one shard, given its latest attempt, the jobs Bedrock knows and the free slots.

    A shard whose job exists for this input keeps it, whatever became of it, with two exceptions that
    make a new (paid) attempt: the resubmission policy (``resubmitted_automatically``), and an explicit
    ``resubmit`` of a Failed, Expired or Stopped job. A submission Bedrock refused created no job and is simply tried again. With no ledger record (a lost ledger),
    the latest attempt Bedrock has for this input is attached, as the ledger would have said.
    """
    attempt = 1
    if latest is None:
        existing = attempts_in(jobs_by_name, prefix, shard.shard, shard.digest)
        attempt = existing[-1] if existing else 1
    else:
        same_input = latest.input_digest == shard.digest
        renew = (resubmit and latest.status.resubmittable) or resubmitted_automatically(latest, max_job_attempts)
        # a shard dequeued by a stop has no job but is as final as a stopped one
        if same_input and (latest.job_arn or latest.status is JobStatus.STOPPED) and not renew:
            return Decision(
                shard, Action.REATTACH, latest.attempt, latest.job_name, reason="already submitted; re-attached"
            )
        waiting = same_input and latest.status in (JobStatus.QUEUED, JobStatus.SUBMITTING)
        attempt = latest.attempt if waiting else latest.attempt + 1
    name = job_name(prefix, shard.shard, shard.digest, attempt)
    found = jobs_by_name.get(name)
    if found is not None and found.input_uri != shard.input_uri:
        return Decision(
            shard,
            Action.NAME_TAKEN,
            attempt,
            name,
            found,
            f"job name {name} is taken by a job reading {found.input_uri}, not {shard.input_uri}; "
            "set a distinct job_name_prefix for this pipeline",
        )
    if found is not None:
        return Decision(shard, Action.ATTACH_FOUND, attempt, name, found, "found existing job by name; re-attached")
    if free_slots <= 0:
        return Decision(shard, Action.QUEUE, attempt, name, reason=NO_SLOT)
    return Decision(shard, Action.CREATE, attempt, name)


def decide_submissions(
    shards: Sequence[ShardToSubmit],
    latest: Mapping[str, JobAttempt],
    jobs_by_name: Mapping[str, JobSummary],
    free_slots: int,
    prefix: str,
    resubmit: bool = False,
    max_job_attempts: int = 1,
    budget: Budget | None = None,
) -> list[Decision]:
    """Decisions for shards in order: each created job takes one of the free slots and, with a budget,
    its worst-case cost from what is left; a shard that does not fit waits."""
    decisions = []
    for shard in shards:
        decision = decide(shard, latest.get(shard.shard), jobs_by_name, free_slots, prefix, resubmit, max_job_attempts)
        if decision.action is Action.CREATE and budget is not None:
            held = budget.hold_reason(shard.worst_usd)
            if held:
                decision = replace(decision, action=Action.QUEUE, reason=held)
            else:
                budget = budget.after(shard.worst_usd or 0.0)
        if decision.action is Action.CREATE:
            free_slots -= 1
        decisions.append(decision)
    return decisions


@dataclass(frozen=True)
class SubmitOutcome:
    attempt: JobAttempt
    detail: str = ""

    @property
    def shard(self) -> str:
        return self.attempt.shard

    @property
    def status(self) -> JobStatus:
        return self.attempt.status

    @property
    def job_arn(self) -> str | None:
        return self.attempt.job_arn


def submit_shards(
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    settings: JobSettings,
    shards: Sequence[ShardToSubmit],
    counter: CallCounter | None = None,
    resubmit: bool = False,
) -> list[SubmitOutcome]:
    """Submit each shard's job unless it already has one; queue shards that find no free slot.

    Idempotent: a job for the same input is re-attached, never resubmitted, unless ``resubmit``
    asks for a new attempt where the job Failed, Expired or was Stopped; a job created before a
    crash is found by its name; the deterministic clientRequestToken makes a retried create return
    the same job.
    """
    client = bedrock.get_client()
    jobs = bedrock.recent_jobs(client, counter)
    free = settings.quotas.max_concurrent_jobs - slots_in_use(jobs, settings.model_id)
    latest = ledger.latest_of(settings.pipeline, [s.shard for s in shards])  # one query for the run's shards
    decisions = decide_submissions(
        shards,
        latest,
        {j.job_name: j for j in jobs},
        free,
        settings.prefix,
        resubmit,
        settings.max_job_attempts,
        settings.budget,
    )
    outcomes: list[SubmitOutcome] = []
    capacity_refused = ""
    for d in decisions:
        if d.action is Action.REATTACH:
            outcomes.append(SubmitOutcome(latest[d.shard.shard], d.reason))
            continue
        attempt = attempt_record(ledger, settings, d, latest.get(d.shard.shard))
        if d.action is Action.NAME_TAKEN:
            attempt = ledger.update(attempt, status=JobStatus.SUBMIT_FAILED, message=d.reason)
            outcomes.append(SubmitOutcome(attempt, d.reason))
        elif d.action is Action.ATTACH_FOUND:
            assert d.found is not None
            outcomes.append(SubmitOutcome(_attach(ledger, attempt, d.found), d.reason))
        elif d.action is Action.QUEUE or capacity_refused:
            reason = capacity_refused or d.reason
            if reason == NO_SLOT:
                reason = f"{NO_SLOT} ({settings.quotas.max_concurrent_jobs} jobs in flight)"
            attempt = ledger.update(attempt, status=JobStatus.QUEUED, queued_at=now_iso(), message=reason)
            outcomes.append(SubmitOutcome(attempt, reason))
        else:
            outcome = _claim_and_create(client, bedrock, ledger, settings, d, attempt, counter)
            if outcome.status is JobStatus.QUEUED:
                capacity_refused = outcome.detail  # Bedrock says the model is full: the rest wait too
            outcomes.append(outcome)
    return outcomes


def attempt_record(ledger: JobLedger, settings: JobSettings, d: Decision, latest: JobAttempt | None) -> JobAttempt:
    """The ledger item for the decided attempt: the latest one, or a new one (a racing run may have made it)."""
    if latest is not None and latest.attempt == d.attempt:
        return latest
    new = JobAttempt(
        pipeline=settings.pipeline,
        shard=d.shard.shard,
        attempt=d.attempt,
        job_name=d.job_name,
        input_digest=d.shard.digest,
        model_id=settings.model_id,
        records=d.shard.records,
        input_uri=d.shard.input_uri,
        output_uri=d.shard.output_uri,
        worst_usd=d.shard.worst_usd,
    )
    try:
        return ledger.create(new)
    except LedgerConflict:
        return ledger.latest(settings.pipeline, d.shard.shard) or new


def claim_is_stale(attempt: JobAttempt, now: datetime | None = None) -> bool:
    """A Submitting claim whose submitter is gone: a process of this host that no longer runs, or (another
    host's, or one that cannot be told) a claim older than CLAIM_LEASE. Taking it over is safe whenever: the
    create that follows carries the same clientRequestToken, so Bedrock answers with the one job there is."""
    if attempt.status is not JobStatus.SUBMITTING:
        return False
    alive = owner_alive(attempt.claimed_by)
    if alive is not None:
        return not alive
    claimed_at = datetime.fromisoformat(attempt.updated_at or now_iso())
    return (now or datetime.now(UTC)) - claimed_at >= CLAIM_LEASE


def claim(ledger: JobLedger, attempt: JobAttempt) -> JobAttempt | None:
    """Move the attempt to Submitting, so that one submitter calls Bedrock; None if a live one holds it.

    A claim whose submitter is gone (``claim_is_stale``) is taken over at once.
    """
    try:
        return ledger.update(attempt, expect_status=(JobStatus.QUEUED,), status=JobStatus.SUBMITTING, claimed_by=OWNER)
    except LedgerConflict:
        pass
    current = ledger.latest(attempt.pipeline, attempt.shard)
    if current is None or current.attempt != attempt.attempt or not claim_is_stale(current):
        return None
    try:
        return ledger.update(
            current,
            expect_status=(JobStatus.SUBMITTING,),
            expect_updated_at=current.updated_at,
            status=JobStatus.SUBMITTING,
            claimed_by=OWNER,
        )
    except LedgerConflict:
        return None


def job_request(bedrock: BedrockBatchResource, settings: JobSettings, d: Decision) -> dict[str, Any]:
    """The CreateModelInvocationJob request of a decided attempt (ValueError for a setting Bedrock would refuse)."""
    return bedrock.job_request(
        name=d.job_name,
        model_id=settings.model_id,
        invocation_type=settings.invocation_type,
        role_arn=settings.role_arn,
        input_uri=d.shard.input_uri,
        output_uri=d.shard.output_uri,
        timeout_hours=settings.timeout_hours,
        tags={**settings.tags, "bedrock-assets:pipeline": settings.pipeline, "bedrock-assets:shard": d.shard.shard},
        expected_bucket_owner=settings.expected_bucket_owner,
        kms_key_id=settings.kms_key_id,
    )


def _claim_and_create(
    client: Any,
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    settings: JobSettings,
    d: Decision,
    attempt: JobAttempt,
    counter: CallCounter | None,
) -> SubmitOutcome:
    """Create the job under a claim; every way out of the claim records where the shard stands."""
    try:
        request = job_request(bedrock, settings, d)
    except ValueError as e:  # a setting no retry can fix (a missing role): final until the settings change
        detail = f"not submitted: {e}"
        return SubmitOutcome(ledger.update(attempt, status=JobStatus.SUBMIT_FAILED, message=detail), detail)
    claimed = claim(ledger, attempt)
    if claimed is None:
        current = ledger.latest(settings.pipeline, d.shard.shard) or attempt
        return SubmitOutcome(current, "being submitted by another run")
    if counter:
        counter.add("CreateModelInvocationJob")
    try:
        arn = client.create_model_invocation_job(**request)["jobArn"]
    except ClientError as e:
        return _refused(client, bedrock, ledger, claimed, d, e, counter)
    except BotoCoreError as e:  # a timeout or a closed connection: the create may have taken effect
        return _resolve(client, bedrock, ledger, claimed, d, f"{type(e).__name__}: {e}", counter)
    except BaseException:  # interrupted: the claim goes back to the queue, the same token resolves it later
        ledger.update(claimed, status=JobStatus.QUEUED, queued_at=now_iso(), message="submission interrupted")
        raise
    attempt = ledger.update(claimed, status=JobStatus.SUBMITTED, job_arn=arn, submitted_at=now_iso())
    return SubmitOutcome(attempt)


def _refused(
    client: Any,
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    attempt: JobAttempt,
    d: Decision,
    error: ClientError,
    counter: CallCounter | None,
) -> SubmitOutcome:
    """What a ClientError on create means: no slot (queued), the service's trouble (it may have created the
    job: looked up by name), or a refusal no retry can fix (SubmitFailed, with Bedrock's message)."""
    code = error.response["Error"]["Code"]
    detail = f"{code}: {error.response['Error'].get('Message', '')}"
    if code in _WAIT_CODES:
        return SubmitOutcome(
            ledger.update(attempt, status=JobStatus.QUEUED, queued_at=now_iso(), message=detail), detail
        )
    if is_transient(error):
        return _resolve(client, bedrock, ledger, attempt, d, detail, counter)
    return SubmitOutcome(ledger.update(attempt, status=JobStatus.SUBMIT_FAILED, message=detail), detail)


def _resolve(
    client: Any,
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    attempt: JobAttempt,
    d: Decision,
    detail: str,
    counter: CallCounter | None,
) -> SubmitOutcome:
    """A create whose answer was lost: attach the job Bedrock has by this name, else queue the shard again
    (the next create carries the same clientRequestToken)."""
    found = bedrock.find_job(client, d.job_name, counter)
    if found is not None and found.input_uri == d.shard.input_uri:
        why = f"{detail}; the job was created: attached"
        return SubmitOutcome(_attach(ledger, attempt, found), why)
    why = f"{detail}; no job named {d.job_name} yet: queued, submitted again with the same request token"
    return SubmitOutcome(ledger.update(attempt, status=JobStatus.QUEUED, queued_at=now_iso(), message=why), why)


def _attach(ledger: JobLedger, attempt: JobAttempt, found: JobSummary) -> JobAttempt:
    """Record a job Bedrock has for the attempt: its status, message, record counts and end."""
    changes: dict[str, Any] = {"status": found.status, "job_arn": found.job_arn, "submitted_at": now_iso()}
    changes["counts"] = JobCounts.from_job(found.counts)
    if found.message:
        changes["message"] = found.message
    if found.end_time:
        changes["end_time"] = found.end_time
    return ledger.update(attempt, **changes)
