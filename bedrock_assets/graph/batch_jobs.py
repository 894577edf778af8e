"""batch_jobs: one Bedrock batch job per shard, submitted within quotas and at most once per input."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from bedrock_assets.bedrock.budget import Budget
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import job_name
from bedrock_assets.bedrock.on_demand import run_on_demand
from bedrock_assets.bedrock.prices import Mode, price_for
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
from bedrock_assets.graph.raw_dataset import ShardInfo
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobLedger, now_iso
from bedrock_assets.planning import worst_cost
from bedrock_assets.spec import PipelineSpec


def pipeline_budget(spec: PipelineSpec, bedrock: BedrockBatchResource, ledger: JobLedger) -> Budget | None:
    """What is left of the pipeline's budget_usd after its jobs (None: no budget)."""
    if spec.budget_usd is None:
        return None
    price = price_for(spec.model.id, bedrock.price_overrides)
    return Budget.of(spec.budget_usd, ledger.attempts_of(spec.name), price)


def job_settings(
    spec: PipelineSpec, bedrock: BedrockBatchResource, ledger: JobLedger | None = None, renew: bool = False
) -> JobSettings:
    """``renew``: apply the resubmission policy (the completion sensor's submit runs only)."""
    return JobSettings(
        pipeline=spec.name,
        prefix=spec.job_prefix,
        model_id=spec.model.id,
        invocation_type=spec.model.invocation_type,
        role_arn=spec.role_arn,
        timeout_hours=spec.timeout_hours,
        tags=spec.tags,
        quotas=spec.quotas(bedrock.quota_overrides),
        expected_bucket_owner=spec.expected_bucket_owner,
        kms_key_id=spec.kms_key_id,
        max_job_attempts=spec.retry.max_job_attempts if renew else 1,
        budget=pipeline_budget(spec, bedrock, ledger) if ledger is not None else None,
    )


def to_submit_of(spec: PipelineSpec, shard: ShardInfo, bedrock: BedrockBatchResource) -> ShardToSubmit:
    layout = PipelineLayout.for_uri(spec.output_uri)
    price = price_for(spec.model.id, bedrock.price_overrides)
    mode = Mode.ON_DEMAND if shard.on_demand else Mode.BATCH
    return ShardToSubmit(
        shard.key,
        shard.digest,
        shard.records,
        layout.shard_input(shard.key).uri,
        layout.job_output(shard.key).uri,
        worst_cost(shard, spec.adapter(), price, mode),
    )


def submit(
    spec: PipelineSpec,
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    shards: list[ShardInfo],
    counter: CallCounter,
    resubmit: bool = False,
    renew: bool = False,
) -> list[SubmitOutcome]:
    """Submit (or re-attach, or queue) the job of each shard; ``resubmit``: new attempts for failed jobs."""
    to_submit = [to_submit_of(spec, s, bedrock) for s in shards]
    return submit_shards(bedrock, ledger, job_settings(spec, bedrock, ledger, renew), to_submit, counter, resubmit)


def stopped_instead(
    spec: PipelineSpec, bedrock: BedrockBatchResource, ledger: JobLedger, shards: list[ShardInfo], stopped_at: str
) -> tuple[list[SubmitOutcome], list[ShardInfo]]:
    """After a whole-pipeline stop, a shard that has no job for its input is recorded Stopped instead of
    getting one; the others (re-attaching costs nothing) are returned to go on."""
    settings, held, rest = job_settings(spec, bedrock), [], []
    for shard in shards:
        latest = ledger.latest(spec.name, shard.key)
        if latest is not None and latest.input_digest == shard.digest and latest.job_arn:
            rest.append(shard)
            continue
        number = 1 if latest is None else latest.attempt + (latest.input_digest != shard.digest)
        name = job_name(settings.prefix, shard.key, shard.digest, number)
        decision = Decision(to_submit_of(spec, shard, bedrock), Action.QUEUE, number, name)
        attempt = attempt_record(ledger, settings, decision, latest)
        reason = f"not submitted: the pipeline was stopped at {stopped_at}"
        if attempt.status is not JobStatus.STOPPED:
            attempt = ledger.update(attempt, status=JobStatus.STOPPED, message=reason, end_time=now_iso())
        held.append(SubmitOutcome(attempt, reason))
    return held, rest


def answer_on_demand(
    spec: PipelineSpec,
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    s3: Any,
    shards: list[ShardInfo],
    counter: CallCounter | None = None,
) -> list[SubmitOutcome]:
    """Answer each (small) retry shard through the runtime API instead of a batch job."""
    settings = job_settings(spec, bedrock, ledger)
    return [
        run_on_demand(
            bedrock,
            ledger,
            s3,
            settings,
            to_submit_of(spec, s, bedrock),
            spec.retry.on_demand_concurrency,
            counter,
        )
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
        meta["message"] = MetadataValue.text(a.message)
    return meta
