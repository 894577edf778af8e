"""batch_jobs: one Bedrock batch job per shard, submitted within quotas and at most once per input.

Shards without a free slot are queued in the ledger and submitted by the completion sensor; a retry
remainder below a job's minimum is answered on demand (the runtime API) instead.
"""

from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from bedrock_assets.bedrock.budget import Budget
from bedrock_assets.bedrock.canary import require_canary
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import CACHE_ARN, job_name
from bedrock_assets.bedrock.on_demand import run_on_demand
from bedrock_assets.bedrock.prices import Mode
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter
from bedrock_assets.bedrock.submission import (
    Action,
    Decision,
    JobSettings,
    ShardToSubmit,
    SubmitOutcome,
    attempt_record,
    submit_shards,
)
from bedrock_assets.deadline import CutoffRecord, Stalled, load_cutoff, stall_after, stalled_jobs
from bedrock_assets.errors import final_unless_transient
from bedrock_assets.keys import TAG_RENEW
from bedrock_assets.ledger import JobCounts, JobLedger, JobLedgerResource, now_iso
from bedrock_assets.metadata import table
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.plan import worst_cost
from bedrock_assets.progress import latest_merges
from bedrock_assets.shards import ShardInfo, load_retry_state, round_of, select_shards, span

SUBMITTED_CHECK = "submitted"
PROGRESS_CHECK = "job_progress"


class SubmitConfig(dg.Config):
    """Run configuration of batch_jobs."""

    resubmit_failed: bool = Field(
        default=False,
        description="create a new (paid) attempt for the selected shards whose job Failed, Expired or was "
        "Stopped; without it a rerun re-attaches to every existing job",
    )


def build(p: Pipeline) -> dg.AssetsDefinition:
    @p.shard_asset(
        p.keys.batch_jobs,
        p.keys.jsonl_shards,
        kinds={"bedrock", "s3"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec(
                SUBMITTED_CHECK,
                asset=p.keys.batch_jobs,
                description="every shard has a Bedrock job or waits for a slot",
            ),
            dg.AssetCheckSpec(
                PROGRESS_CHECK,
                asset=p.keys.batch_jobs,
                description="no job stalled: InProgress with no record processed, or Submitted/Scheduled, for "
                "stall_after (warns; the completion sensor re-evaluates it as jobs move)",
            ),
        ],
        description="Bedrock batch job per shard: quota-aware, idempotent submission (re-attaches on rerun). "
        "Shards without a free slot are queued and submitted by the completion sensor. A retry remainder "
        "below a job's minimum is answered on demand (runtime API).",
    )
    @final_unless_transient
    def batch_jobs(
        context: dg.AssetExecutionContext,
        config: SubmitConfig,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.MaterializeResult:
        return materialize(context, config, p.step(s3, bedrock), bedrock_ledger.get_ledger())

    return batch_jobs


def materialize(
    context: dg.AssetExecutionContext, config: SubmitConfig, step: Step, ledger: JobLedger
) -> dg.MaterializeResult:
    """Submit, re-attach, queue or answer on demand every shard of the run; the check fails for a refused job."""
    shards = select_shards(step, context.partition_keys)
    counter = CallCounter()
    renew = context.run.tags.get(TAG_RENEW) == "true"  # the sensor's runs apply the resubmission policy
    outcomes: list[SubmitOutcome] = []
    if stopped_at := load_retry_state(step).stopped_at:  # a person stopped the pipeline
        outcomes, shards = stopped_instead(step, ledger, shards, stopped_at)
        renew = False
    if config.resubmit_failed:
        refuse_resubmitting_retried(context, step, [s.key for s in shards])
    if step.spec.deadline.active and (cutoff := load_cutoff(step)) is not None:
        shards = past_cutoff(step, ledger, shards, cutoff)
    answered = [s for s in shards if s.cached and not s.records]  # the record cache answers every record
    outcomes += [from_cache(step, ledger, s) for s in answered]
    shards = [s for s in shards if s not in answered]
    batch = [s for s in shards if not s.on_demand]
    if batch and (canary := require_canary(step, ledger, batch[0], step.spec.retry.service_tier, counter)) is not None:
        context.log.info(f"canary: {canary.records} record(s) answered on demand as a batch job would; submitting")
    outcomes += submit(step, ledger, batch, counter, config.resubmit_failed, renew)
    outcomes += answer_on_demand(step, ledger, [s for s in shards if s.on_demand], counter)
    for o in outcomes:
        context.log.info(f"{o.shard}: {o.status.value} {o.job_arn or ''} {o.detail}".strip())
        context.add_asset_metadata(outcome_metadata(o), partition_key=o.shard)
    failed = [o for o in outcomes if o.status is JobStatus.SUBMIT_FAILED]
    rows = [{"shard": o.shard, "message": o.attempt.message or o.detail} for o in failed]
    stalled = stalled_jobs([o.attempt for o in outcomes], datetime.now(UTC), stall_after(step.spec))
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name=SUBMITTED_CHECK,
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"failed": table(rows, ["shard", "message"]), **counter.metadata()},
            ),
            progress_result(stalled, step.spec.deadline.active),
        ]
    )


def past_cutoff(step: Step, ledger: JobLedger, shards: list[ShardInfo], cutoff: CutoffRecord) -> list[ShardInfo]:
    """Past the deadline's batch cutoff a shard without a batch job for its input is answered on demand (one that
    has a job re-attaches to it: the cutoff stops it if it cannot finish in time)."""
    chosen = []
    for shard in shards:
        latest = ledger.latest(step.name, shard.key)
        has_job = latest is not None and latest.input_digest == shard.digest and latest.job_arn is not None
        chosen.append(shard if shard.on_demand or has_job else replace(shard, on_demand=True))
    return chosen


def _stalled_text(stalled: list[Stalled], under_deadline: bool) -> str | None:
    if not stalled:
        return None
    then = (
        "the deadline's batch cutoff stops it and answers its records on demand"
        if under_deadline
        else "it is left running (stop it with bedrock-assets stop, or set a deadline)"
    )
    named = "; ".join(f"{s.shard} ({s.job_arn}): {s.reason}" for s in stalled[:5])
    return (
        f"{len(stalled)} stalled job(s): {named}"
        + (f"; and {len(stalled) - 5} more" if len(stalled) > 5 else "")
        + f"; {then}"
    )


def progress_result(stalled: list[Stalled], under_deadline: bool) -> dg.AssetCheckResult:
    """``job_progress`` (warning) in a batch_jobs materialization."""
    return dg.AssetCheckResult(
        check_name=PROGRESS_CHECK,
        passed=not stalled,
        severity=dg.AssetCheckSeverity.WARN,
        description=_stalled_text(stalled, under_deadline),
        metadata={"stalled": table([asdict(s) for s in stalled], ["shard", "job_arn", "reason"])},
    )


def progress_check(asset: dg.AssetKey, stalled: list[Stalled], under_deadline: bool) -> dg.AssetCheckEvaluation:
    """``job_progress`` as the completion sensor reports it whenever the set of stalled jobs changes."""
    result = progress_result(stalled, under_deadline)
    return dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name=PROGRESS_CHECK,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=result.description,
        metadata=result.metadata,
    )


def refuse_resubmitting_retried(context: dg.AssetExecutionContext, step: Step, keys: list[str]) -> None:
    """``resubmit_failed`` for a first-pass shard whose retriable records a retry round already sent again would
    pay for answers the round gave (its outcomes win in merged_dataset): refused, naming the shards."""
    rounds = load_retry_state(step).rounds
    if not rounds:
        return
    marks = latest_merges(context.instance, step.keys.merged_results)
    retried = [k for k in keys if round_of(k) == 0 and k in marks and marks[k].retriable > 0]
    if retried:
        raise dg.Failure(
            f"resubmit_failed: the retriable records of {span(retried)} were sent again in retry round "
            f"{rounds[0].round}; a new job would pay again for answers the rounds already gave (their outcomes "
            "win in merged_dataset). Nothing was submitted. To send a shard again from scratch, change its input",
            allow_retries=False,
        )


def pipeline_budget(step: Step, ledger: JobLedger) -> Budget | None:
    """What is left of the pipeline's budget_usd after its jobs (None: no budget)."""
    if step.spec.budget_usd is None:
        return None
    return Budget.of(step.spec.budget_usd, ledger.attempts_of(step.name), step.price)


def job_settings(step: Step, ledger: JobLedger | None = None, renew: bool = False) -> JobSettings:
    """``renew``: apply the resubmission policy (the completion sensor's submit runs only)."""
    spec = step.spec
    return JobSettings(
        pipeline=spec.name,
        prefix=spec.job_prefix,
        model_id=spec.model.id,
        invocation_type=spec.model.invocation_type,
        role_arn=spec.role_arn,
        timeout_hours=spec.timeout_hours,
        tags=spec.tags,
        quotas=step.quotas,
        expected_bucket_owner=spec.expected_bucket_owner,
        kms_key_id=spec.kms_key_id,
        max_job_attempts=spec.retry.max_job_attempts if renew else 1,
        budget=pipeline_budget(step, ledger) if ledger is not None else None,
        service_tier=spec.retry.service_tier,
    )


def to_submit_of(step: Step, shard: ShardInfo) -> ShardToSubmit:
    layout = step.layout
    mode = Mode.ON_DEMAND if shard.on_demand else Mode.BATCH
    return ShardToSubmit(
        shard.key,
        shard.digest,
        shard.records,
        layout.shard_input(shard.key).uri,
        layout.job_output(shard.key).uri,
        worst_cost(shard, step.adapter, step.price, mode, step.spec.retry.service_tier),
    )


def submit(
    step: Step,
    ledger: JobLedger,
    shards: list[ShardInfo],
    counter: CallCounter,
    resubmit: bool = False,
    renew: bool = False,
) -> list[SubmitOutcome]:
    """Submit (or re-attach, or queue) the job of each shard; ``resubmit``: new attempts for failed jobs."""
    to_submit = [to_submit_of(step, s) for s in shards]
    settings = job_settings(step, ledger, renew)
    return submit_shards(step.bedrock, ledger, settings, to_submit, counter, resubmit)


def stopped_instead(
    step: Step, ledger: JobLedger, shards: list[ShardInfo], stopped_at: str
) -> tuple[list[SubmitOutcome], list[ShardInfo]]:
    """After a whole-pipeline stop, a shard that has no job for its input is recorded Stopped instead of
    getting one; the others (re-attaching costs nothing) are returned to go on."""
    settings = job_settings(step)
    held: list[SubmitOutcome] = []
    rest: list[ShardInfo] = []
    for shard in shards:
        latest = ledger.latest(step.name, shard.key)
        if latest is not None and latest.input_digest == shard.digest and latest.job_arn:
            rest.append(shard)
            continue
        number = 1 if latest is None else latest.attempt + (latest.input_digest != shard.digest)
        name = job_name(settings.prefix, shard.key, shard.digest, number)
        decision = Decision(to_submit_of(step, shard), Action.QUEUE, number, name)
        attempt = attempt_record(ledger, settings, decision, latest)
        reason = f"not submitted: the pipeline was stopped at {stopped_at}"
        if attempt.status is not JobStatus.STOPPED:
            attempt = ledger.update(attempt, status=JobStatus.STOPPED, message=reason, end_time=now_iso())
        held.append(SubmitOutcome(attempt, reason))
    return held, rest


def from_cache(step: Step, ledger: JobLedger, shard: ShardInfo) -> SubmitOutcome:
    """A shard whose every record the record cache answers: an attempt with no job (``CACHE_ARN``), Completed at
    once, costing nothing; merged_results takes each record's cached outcome."""
    latest = ledger.latest(step.name, shard.key)
    if latest is not None and latest.input_digest == shard.digest and latest.job_arn:
        return SubmitOutcome(latest, "answered by the record cache; re-attached")
    number = 1 if latest is None else latest.attempt + (latest.input_digest != shard.digest)
    name = job_name(step.spec.job_prefix, shard.key, shard.digest, number)
    attempt = attempt_record(
        ledger, job_settings(step), Decision(to_submit_of(step, shard), Action.CREATE, number, name), latest
    )
    now = now_iso()
    done = ledger.update(
        attempt,
        status=JobStatus.COMPLETED,
        job_arn=CACHE_ARN + name,
        counts=JobCounts(),
        submitted_at=now,
        end_time=now,
    )
    return SubmitOutcome(done, f"all {shard.cached} record(s) answered by the record cache: no job, nothing paid")


def answer_on_demand(
    step: Step, ledger: JobLedger, shards: list[ShardInfo], counter: CallCounter | None = None
) -> list[SubmitOutcome]:
    """Answer each (small) retry shard through the runtime API instead of a batch job."""
    settings = job_settings(step, ledger)
    concurrency = step.spec.retry.on_demand_concurrency
    return [
        run_on_demand(step.bedrock, ledger, step.s3, settings, to_submit_of(step, s), concurrency, counter)
        for s in shards
    ]


def outcome_metadata(outcome: SubmitOutcome) -> dict[str, Any]:
    a = outcome.attempt
    meta: dict[str, Any] = {
        "status": a.status.value,
        "attempt": a.attempt,
        "job_name": a.job_name,
        "records": a.records,
    }
    if a.job_arn:
        meta["job_arn"] = a.job_arn
    meta["cost_worst_usd"] = round(a.worst_usd, 10) if a.worst_usd is not None else "cost unknown"
    if outcome.detail:
        meta["detail"] = outcome.detail
    if a.message:
        meta["message"] = dg.MetadataValue.text(a.message)
    return meta
