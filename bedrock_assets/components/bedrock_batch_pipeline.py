"""The ``BedrockBatchPipeline`` component: one pipeline spec becomes one asset group.

Wiring only (decorators, partitions, checks, jobs, sensors); each node's work lives in the graph
module named after it.

    raw_dataset -> jsonl_shards[shard] -> batch_jobs[shard] -(job_completion sensor)-> batch_job_outputs[shard]
    -> merged_results[shard] -> merged_dataset
                               -> retry_rounds (registers retry shards r1-00000... of the same shard assets)
"""

import functools
import inspect
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import BaseModel, Field

from bedrock_assets import chain
from bedrock_assets.aws import shared
from bedrock_assets.bedrock import cancel
from bedrock_assets.bedrock.budget import Budget
from bedrock_assets.bedrock.costs import Bill, actual_cost
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.prices import price_for, usd
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter
from bedrock_assets.bedrock.submission import resubmitted_automatically
from bedrock_assets.components.pipeline_keys import (
    STAGES,
    TAG_JOB_STATUS,
    TAG_PIPELINE,
    TAG_RENEW,
    PipelineKeys,
    partition_tags,
    stage_tags,
)
from bedrock_assets.components.scaffold import BedrockBatchPipelineScaffolder
from bedrock_assets.errors import is_transient
from bedrock_assets.graph import (
    batch_job_outputs,
    batch_jobs,
    job_completion,
    jsonl_shards,
    merged_dataset,
    merged_results,
    raw_dataset,
    retry_rounds,
)
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobLedgerResource
from bedrock_assets.metadata import table
from bedrock_assets.planning import PipelinePlan
from bedrock_assets.sources import SourceError
from bedrock_assets.spec import ModelSpec, PipelineSpec, SpecError, parse_pipeline, schema_model
from bedrock_assets.storage import S3Access

COMPLETION_INTERVAL_SECONDS = 30

# BackfillPolicy on assets is marked beta in Dagster 1.13; we rely on it for one run per range of shards.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=r".*backfill_policy.*")


# AWS calls in a step: a blip past botocore's own retries retries the step; anything else fails it at once
AWS_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def final_unless_transient(body: Callable[..., Any]) -> Callable[..., Any]:
    """A step's errors end it at once (no retry) unless they are an outage or throttling."""

    def final(error: Exception) -> dg.Failure | None:
        if is_transient(error) or isinstance(error, dg.Failure):
            return None  # raised as it is: the retry policy applies
        return dg.Failure(description=f"{type(error).__name__}: {error}", allow_retries=False)

    if inspect.isgeneratorfunction(body):

        @functools.wraps(body)
        def steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from body(*args, **kwargs)
            except Exception as error:
                if (failure := final(error)) is None:
                    raise
                raise failure from error

        return steps

    @functools.wraps(body)
    def step(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except Exception as error:
            if (failure := final(error)) is None:
                raise
            raise failure from error

    return step


class SubmitConfig(dg.Config):
    """Run configuration of batch_jobs."""

    resubmit_failed: bool = Field(
        default=False,
        description="create a new (paid) attempt for the selected shards whose job Failed, Expired or was "
        "Stopped; without it a rerun re-attaches to every existing job",
    )


class StopConfig(dg.Config):
    """Run configuration of a pipeline's __stop job."""

    shards: list[str] = Field(
        default_factory=list,
        description="shard partitions to stop; empty: every job of the pipeline, and no further retry rounds",
    )


def pipeline_storage(spec: PipelineSpec, s3: S3Resource, bedrock: BedrockBatchResource) -> S3Access:
    """S3 as a pipeline uses it: its bucket owner and KMS key, else the bedrock resource's, on every call."""
    return S3Access(
        shared("s3", s3, s3.get_client),
        spec.expected_bucket_owner or bedrock.expected_bucket_owner,
        spec.kms_key_id or bedrock.output_kms_key_id,
    )


def build_pipeline_defs(spec: PipelineSpec, automation_sensor: bool = True) -> dg.Definitions:
    """All assets, checks, stage jobs and sensors of one pipeline."""

    def storage(s3: S3Resource, bedrock: BedrockBatchResource) -> S3Access:
        return pipeline_storage(spec, s3, bedrock)

    keys = PipelineKeys(spec.name)
    shards_def = dg.DynamicPartitionsDefinition(name=keys.partitions)
    layout = PipelineLayout.for_uri(spec.output_uri)
    group, shard_group = spec.name, keys.shard_group
    one_run = dg.BackfillPolicy.single_run()

    upstream = spec.source.pipeline  # a chain: another pipeline's merged dataset is the source

    @dg.asset(
        key=keys.raw_dataset,
        retry_policy=AWS_RETRY,
        group_name=group,
        kinds={"parquet", "s3"},
        deps=[chain.upstream_key(upstream)] if upstream else None,
        # a chain follows its upstream: a new merged dataset there re-reads this source (unchanged shards
        # keep their jobs, so nothing is paid twice)
        automation_condition=dg.AutomationCondition.eager() if upstream else None,
        output_required=not upstream,
        description=f"Source {spec.source.uri or f'{upstream}/merged_dataset'} with stable record ids and validated "
        "requests, cut into quota-compliant shards (registers the shard partitions).",
    )
    @final_unless_transient
    def _raw_dataset(
        context: dg.AssetExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource
    ) -> Iterator[dg.MaterializeResult]:
        client = storage(s3, bedrock)
        previous = raw_dataset.load_shard_plan_if_any(spec, client)
        try:
            source_uri = chain.upstream_uri(context.instance, upstream) if upstream else None
        except SourceError as waiting:  # the upstream has no merged dataset yet: nothing to read, not a failure
            context.log.warning(str(waiting))
            return
        plan = raw_dataset.prepare_dataset(
            spec, client, bedrock.quota_overrides, log=context.log.debug, source_uri=source_uri
        )
        same_shards = previous is not None and previous.same_shards(plan)
        if not same_shards:  # retry rounds were cut from shards that no longer exist as they were
            retry_rounds.save_retry_state(spec, client, retry_rounds.RetryState())
        stale = [
            k
            for k in context.instance.get_dynamic_partitions(keys.partitions)
            if k not in plan.keys and not (same_shards and retry_rounds.round_of(k) > 0)
        ]
        for key in stale:
            context.instance.delete_dynamic_partition(keys.partitions, key)
        context.instance.add_dynamic_partitions(keys.partitions, plan.keys)
        context.log.info(f"{plan.rows} rows in {len(plan.shards)} shards ({plan.rejected} rejected before submission)")
        estimate = PipelinePlan.of(spec, plan, bedrock.price_overrides)
        if estimate.price is None:
            context.log.warning(f"{spec.name}: cost unknown: no price for {spec.model.id} (set price_overrides)")
        yield dg.MaterializeResult(
            metadata={**plan.metadata(layout), **estimate.metadata(), "removed_stale_shards": len(stale)}
        )

    @dg.asset(
        key=keys.jsonl_shards,
        retry_policy=AWS_RETRY,
        group_name=shard_group,
        deps=[keys.raw_dataset],
        partitions_def=shards_def,
        backfill_policy=one_run,
        kinds={"jsonl", "s3"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec(
                "within_batch_quotas",
                asset=keys.jsonl_shards,
                blocking=True,
                description="record count and bytes inside the model's batch quotas",
            )
        ],
        description="Each shard's Bedrock input file ({recordId, modelInput} lines); retry shards hold only "
        "the retriable records of the previous round.",
    )
    @final_unless_transient
    def _jsonl_shards(
        context: dg.AssetExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource
    ) -> dg.MaterializeResult:
        client = storage(s3, bedrock)
        quotas = spec.quotas(bedrock.quota_overrides)
        violations = []
        for info in retry_rounds.select_shards(spec, client, context.partition_keys):
            written = jsonl_shards.write_shard_input(spec, client, info)
            if not info.on_demand and (why := written.violation(quotas)) is not None:
                violations.append({"shard": written.shard, "violation": why})
            context.add_asset_metadata(written.metadata(), partition_key=written.shard)
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name="within_batch_quotas",
                    passed=not violations,
                    metadata={"shards_checked": len(context.partition_keys), "violations": table(violations)},
                )
            ]
        )

    @dg.asset(
        key=keys.batch_jobs,
        retry_policy=AWS_RETRY,
        group_name=shard_group,
        deps=[keys.jsonl_shards],
        partitions_def=shards_def,
        backfill_policy=one_run,
        kinds={"bedrock", "s3"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec(
                "submitted", asset=keys.batch_jobs, description="every shard has a Bedrock job or waits for a slot"
            )
        ],
        description="Bedrock batch job per shard: quota-aware, idempotent submission (re-attaches on rerun). "
        "Shards without a free slot are queued and submitted by the completion sensor. A retry remainder "
        "below a job's minimum is answered on demand (runtime API).",
    )
    @final_unless_transient
    def _batch_jobs(
        context: dg.AssetExecutionContext,
        config: SubmitConfig,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.MaterializeResult:
        client = storage(s3, bedrock)
        shards = retry_rounds.select_shards(spec, client, context.partition_keys)
        counter = CallCounter()
        job_ledger = bedrock_ledger.get_ledger()
        renew = context.run.tags.get(TAG_RENEW) == "true"  # the sensor's runs apply the resubmission policy
        outcomes = []
        if stopped_at := retry_rounds.load_retry_state(spec, client).stopped_at:  # a person stopped the pipeline
            outcomes, shards = batch_jobs.stopped_instead(spec, bedrock, job_ledger, shards, stopped_at)
            renew = False
        outcomes += batch_jobs.submit(
            spec, bedrock, job_ledger, [s for s in shards if not s.on_demand], counter, config.resubmit_failed, renew
        )
        outcomes += batch_jobs.answer_on_demand(
            spec, bedrock, job_ledger, client, [s for s in shards if s.on_demand], counter
        )
        for o in outcomes:
            context.log.info(f"{o.shard}: {o.status.value} {o.job_arn or ''} {o.detail}".strip())
            context.add_asset_metadata(batch_jobs.outcome_metadata(o), partition_key=o.shard)
        failed = [o for o in outcomes if o.status is JobStatus.SUBMIT_FAILED]
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name="submitted",
                    passed=not failed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "failed": table(
                            [{"shard": o.shard, "message": o.attempt.message or o.detail} for o in failed],
                            ["shard", "message"],
                        ),
                        "bedrock_calls": dg.MetadataValue.json(counter.calls),
                    },
                )
            ]
        )

    @dg.asset(
        key=keys.batch_job_outputs,
        retry_policy=AWS_RETRY,
        group_name=shard_group,
        deps=[keys.batch_jobs],
        partitions_def=shards_def,
        backfill_policy=one_run,
        kinds={"bedrock", "s3"},
        check_specs=[
            dg.AssetCheckSpec(
                "job_succeeded",
                asset=keys.batch_job_outputs,
                description="every job finished with output (Completed or PartiallyCompleted), not Failed, "
                "Expired, Stopped or refused; a failed job's message is here",
            )
        ],
        description="The job's .jsonl.out lines and manifest.json.out, normalized into rows "
        "(output or error_code/error_message, token counts).",
    )
    @final_unless_transient
    def _batch_job_outputs(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.MaterializeResult:
        client = storage(s3, bedrock)
        job_ledger = bedrock_ledger.get_ledger()
        price = price_for(spec.model.id, bedrock.price_overrides)
        results = []
        for shard in context.partition_keys:
            attempt = batch_job_outputs.finished_attempt(job_ledger, spec.name, shard)
            outputs = batch_job_outputs.collect_job_outputs(spec, client, attempt)
            attempt = job_ledger.update(attempt, input_tokens=outputs.input_tokens, output_tokens=outputs.output_tokens)
            cost = actual_cost(attempt, price)
            context.add_asset_metadata(
                {**outputs.metadata(), "cost_usd": round(cost, 10) if cost is not None else "cost unknown"},
                partition_key=shard,
            )
            if not attempt.status.has_output:
                context.log.warning(f"{shard}: batch job {attempt.status.value}: {attempt.message or 'no message'}")
            results.append(outputs)
        return dg.MaterializeResult(check_results=[batch_job_outputs.jobs_check(results)])

    @dg.asset(
        key=keys.merged_results,
        retry_policy=AWS_RETRY,
        group_name=shard_group,
        deps=[keys.batch_job_outputs],
        partitions_def=shards_def,
        backfill_policy=one_run,
        kinds={"parquet", "s3"},
        check_specs=[
            dg.AssetCheckSpec(
                "every_input_row_once",
                asset=keys.merged_results,
                blocking=True,
                description="each input row of the shard appears exactly once",
            ),
            dg.AssetCheckSpec(
                "error_rate",
                asset=keys.merged_results,
                description="no shard has more failed rows than max_error_rate allows",
            ),
        ],
        description="Left join of outputs onto the shard's input rows: every row once, with output or error.",
    )
    @final_unless_transient
    def _merged_results(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.MaterializeResult:
        client = storage(s3, bedrock)
        job_ledger = bedrock_ledger.get_ledger()
        merged = []
        for shard in context.partition_keys:
            attempt = batch_job_outputs.finished_attempt(job_ledger, spec.name, shard)
            result = merged_results.merge_results(spec, client, attempt)
            merged.append(result)
            context.add_asset_metadata(result.metadata(), partition_key=shard)
        return dg.MaterializeResult(
            check_results=[
                merged_results.rows_check(merged),
                merged_results.error_rate_check(merged, spec.max_error_rate),
            ]
        )

    @dg.asset(
        key=keys.retry_rounds,
        retry_policy=AWS_RETRY,
        group_name=group,
        deps=[keys.merged_results],
        kinds={"parquet", "s3"},
        description="Cuts the next retry round: the retriable records of every shard of the finished round, "
        "pooled into new shards (r<N>-00000...) of the same shard assets, or answered on demand when fewer "
        "than a job's minimum. Requested by the completion sensor.",
    )
    @final_unless_transient
    def _retry_rounds(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.MaterializeResult:
        partitions = context.instance.get_dynamic_partitions(keys.partitions)
        latest = bedrock_ledger.get_ledger().latest_by_shard(spec.name)
        marks = job_completion.latest_merges(context.instance, keys.merged_results)
        progress = retry_rounds.RoundProgress.of(partitions, latest, marks)
        quotas = spec.quotas(bedrock.quota_overrides)
        plan = retry_rounds.plan_next_round(spec, storage(s3, bedrock), progress, quotas.min_records_per_job, quotas)
        for key in plan.removed:
            context.instance.delete_dynamic_partition(keys.partitions, key)
        if plan.round is not None:
            context.instance.add_dynamic_partitions(keys.partitions, plan.round.keys)
        context.log.info(f"{spec.name}: {plan.reason}")
        return dg.MaterializeResult(metadata=plan.metadata())

    @dg.asset(
        key=keys.merged_dataset,
        retry_policy=AWS_RETRY,
        group_name=group,
        deps=[keys.merged_results],
        kinds={"parquet", "s3"},
        automation_condition=dg.AutomationCondition.eager(),
        output_required=False,
        check_specs=[
            dg.AssetCheckSpec(
                "complete",
                asset=keys.merged_dataset,
                description="every input row is in the merged dataset and at most max_error_rate of them failed "
                "(warns while shards are still being merged)",
            )
        ],
        description="All merged shards in one Parquet dataset, each record with its outcome from the last retry "
        "round that holds it (materialized once every shard and retry round is merged).",
    )
    @final_unless_transient
    def _merged_dataset(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> Iterator[Any]:
        client = storage(s3, bedrock)
        try:
            plan = raw_dataset.load_shard_plan(spec, client)
        except raw_dataset.MissingShardPlan:
            yield _not_complete(
                context,
                "the shards are not planned yet (raw_dataset had not run when this step started); "
                "merged_dataset is materialized automatically once every shard is merged",
                waiting=None,
            )
            return
        latest = bedrock_ledger.get_ledger().latest_by_shard(spec.name)
        partitions = context.instance.get_dynamic_partitions(keys.partitions)
        marks = job_completion.latest_merges(context.instance, keys.merged_results)
        merged = {k: m.job for k, m in marks.items()}
        waiting = job_completion.unmerged(partitions, latest, merged)
        if waiting:
            yield _not_complete(
                context,
                f"{len(waiting)} of {len(partitions)} shards are not merged yet ({job_completion.span(waiting)}); "
                "merged_dataset is materialized automatically once they are",
                waiting=len(waiting),
            )
            return
        progress = retry_rounds.RoundProgress.of(partitions, latest, marks)
        if retry_rounds.retry_due(spec, client, progress, spec.quotas(bedrock.quota_overrides).min_records_per_job):
            yield _not_complete(
                context,
                f"retry round {progress.round + 1} is due ({progress.retriable} retriable rows); merged_dataset is "
                "materialized automatically after the last round",
                waiting=0,
            )
            return
        state = retry_rounds.load_retry_state(spec, client)
        retry_keys = [k for r in state.rounds for k in r.keys if k in partitions]
        dataset = merged_dataset.merge_dataset(spec, client, plan.keys, retry_keys, state.rounds)
        check = merged_dataset.complete_check(dataset, plan.rows, spec.max_error_rate, latest, partitions)
        if not check.passed:
            context.log.warning(f"{spec.name}: {check.description}")
        attempts = [latest[k] for k in partitions]
        status = job_completion.PipelineStatus.of(partitions, latest, merged)
        price = price_for(spec.model.id, bedrock.price_overrides)
        bill = Bill.of(bedrock_ledger.get_ledger().attempts_of(spec.name), price)  # every attempt that ran
        estimate = PipelinePlan.of(spec, plan, bedrock.price_overrides).estimate.cost(price)
        yield dg.MaterializeResult(
            metadata={
                **dataset.metadata(),
                "input_tokens": sum(a.input_tokens or 0 for a in attempts),
                "output_tokens": sum(a.output_tokens or 0 for a in attempts),
                merged_dataset.JOBS_DIGEST: job_completion.jobs_digest(partitions, latest),
                **bill.metadata(),
                **(
                    {
                        "planned_cost_expected_usd": round(estimate.expected, 10),
                        "planned_cost_worst_usd": round(estimate.worst, 10),
                    }
                    if estimate is not None
                    else {}
                ),
                "cost_by_round": table(bill.by_round(retry_rounds.round_of), ["round", "cost"]),
                "job_statuses": dg.MetadataValue.json(status.jobs),
                "jobs": table(
                    [
                        {
                            "shard": k,
                            "status": latest[k].status.value,
                            "job_arn": latest[k].job_arn or "",
                            "cost_usd": usd(bill.by_shard.get(k) if price is not None else None),
                        }
                        for k in partitions
                    ]
                ),
            },
            check_results=[check],
        )

    assets = [
        _raw_dataset,
        _jsonl_shards,
        _batch_jobs,
        _batch_job_outputs,
        _merged_results,
        _retry_rounds,
        _merged_dataset,
    ]
    jobs = {
        stage: dg.define_asset_job(
            keys.job(stage),
            selection=[keys.asset(n) for n in nodes],
            tags=stage_tags(spec.name, stage),
            description=f"{spec.name}: {stage} ({', '.join(nodes)})",
            # the steps of a stage run one after another over the same shards: one process, no step
            # subprocesses, and what a step wrote is read back from this process's local copies
            executor_def=dg.in_process_executor,
        )
        for stage, nodes in STAGES.items()
    }

    @dg.op(name=f"{spec.name}__stop_jobs", description=f"Stops the Bedrock jobs of {spec.name!r}")
    def _stop_jobs(
        context: dg.OpExecutionContext,
        config: StopConfig,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> str:
        counter = CallCounter()
        report = cancel.stop_jobs(bedrock, bedrock_ledger.get_ledger(), spec.name, config.shards or None, counter)
        if not config.shards:
            retry_rounds.stop_retries(spec, storage(s3, bedrock))
        context.log.info(report.line(spec.name))
        context.instance.report_runless_asset_event(
            dg.AssetObservation(
                keys.merged_dataset,
                metadata={
                    "stopped": report.line(spec.name),
                    "stopped_shards": dg.MetadataValue.json(report.stopped + report.dequeued),
                },
            )
        )
        return report.line(spec.name)

    @dg.job(
        name=keys.job("stop"),
        tags=stage_tags(spec.name, "stop"),
        description=f"{spec.name}: stop every job in flight (StopModelInvocationJob), dequeue queued shards and "
        "start no further retry rounds; set shards in the config to stop only those",
    )
    def _stop() -> None:
        _stop_jobs()

    @dg.sensor(
        name=keys.completion_sensor,
        minimum_interval_seconds=COMPLETION_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[jobs["submit"], jobs["merge"], jobs["retry"]],
        description=f"Polls the Bedrock batch jobs of {spec.name!r}: merges finished ones, submits queued shards "
        "when a slot frees.",
    )
    def _job_completion(
        context: dg.SensorEvaluationContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.SensorResult:
        return completion_tick(
            spec, keys, context.instance, storage(s3, bedrock), bedrock, bedrock_ledger, context.cursor, context.log
        )

    sensors: list[Any] = [_job_completion]
    if automation_sensor:
        sensors.append(
            dg.AutomationConditionSensorDefinition(
                keys.automation_sensor,
                target=keys.selection,
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=15,
                run_tags={TAG_PIPELINE: spec.name},
                description=f"Carries {spec.name!r} from a new raw_dataset to submitted jobs, and from merged shards "
                "to merged_dataset.",
            )
        )
    return dg.Definitions(assets=assets, jobs=[*jobs.values(), _stop], sensors=sensors)


def _not_complete(context: dg.AssetExecutionContext, reason: str, waiting: int | None) -> dg.AssetCheckResult:
    """merged_dataset cannot be built yet: say why, and leave the asset unmaterialized (the run succeeds)."""
    context.log.warning(reason)
    return dg.AssetCheckResult(
        check_name="complete",
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=reason,
        metadata={"shards_not_merged": waiting} if waiting is not None else {},
    )


def completion_tick(
    spec: PipelineSpec,
    keys: PipelineKeys,
    instance: dg.DagsterInstance,
    s3: S3Access,
    bedrock: BedrockBatchResource,
    ledger: JobLedgerResource,
    previous_cursor: str | None = None,
    log: Any = None,
) -> dg.SensorResult:
    """One tick of the completion sensor: poll, record, and request merge, submit and retry-round runs."""
    shards = instance.get_dynamic_partitions(keys.partitions)
    polled = job_completion.poll(spec, bedrock, ledger.get_ledger())
    busy = job_completion.busy_shards(instance, [keys.job("merge"), keys.job("submit")], shards)
    marks = job_completion.latest_merges(instance, keys.merged_results)
    merged = {k: m.job for k, m in marks.items()}
    budget = (
        Budget.of(spec.budget_usd, polled.latest.values(), price_for(spec.model.id, bedrock.price_overrides))
        if spec.budget_usd is not None
        else None
    )
    renewable = any(
        a.status.is_terminal and resubmitted_automatically(a, spec.retry.max_job_attempts)
        for a in polled.latest.values()
    )
    # after a person stopped the pipeline, no job is renewed (one small read, only when one could be)
    stopped = renewable and retry_rounds.load_retry_state(spec, s3).stopped_at is not None
    decision = job_completion.decide_tick(
        polled.latest, shards, merged, busy, polled.free_slots, 1 if stopped else spec.retry.max_job_attempts, budget
    )
    requests = []
    for group in decision.merge_groups:
        names = [a.shard for a in group]
        requests.append(
            dg.RunRequest(
                run_key=job_completion.merge_run_key(group),
                job_name=keys.job("merge"),
                partition_key=names[0] if len(names) == 1 else None,
                tags={
                    **stage_tags(spec.name, "merge", names),
                    **partition_tags(names),
                    TAG_JOB_STATUS: ",".join(sorted({a.status.value for a in group})),
                },
            )
        )
    for group in job_completion.contiguous_groups(decision.submit, shards, job_completion.shard_of):
        names = [a.shard for a in group]
        requests.append(
            dg.RunRequest(
                run_key=job_completion.submit_run_key(group),
                job_name=keys.job("submit"),
                partition_key=names[0] if len(names) == 1 else None,
                tags={**stage_tags(spec.name, "submit", names), **partition_tags(names), TAG_RENEW: "true"},
            )
        )
    progress = retry_rounds.RoundProgress.of(shards, polled.latest, marks)
    if retry_rounds.retry_due(spec, s3, progress, spec.quotas(bedrock.quota_overrides).min_records_per_job):
        requests.append(
            dg.RunRequest(
                run_key=f"retry:r{progress.round + 1}:{progress.basis}",
                job_name=keys.job("retry"),
                tags=stage_tags(spec.name, "retry"),
            )
        )
    observations = [
        dg.AssetObservation(
            keys.batch_jobs,
            partition=a.shard,
            metadata={
                "status": a.status.value,
                "job_arn": a.job_arn or "",
                "attempt": a.attempt,
                "records_total": a.counts.total,
                "records_processed": a.counts.processed,
                "records_succeeded": a.counts.succeeded,
                "records_errored": a.counts.errored,
            },
        )
        for a in polled.changed
    ]
    status = job_completion.PipelineStatus.of(shards, polled.latest, merged)
    summary = {"status": status.line(spec.name), "calls": polled.calls.calls}
    if previous_cursor is None or json.loads(previous_cursor).get("status") != summary["status"]:
        # the pipeline at a glance, on its merged_dataset: shards per job state, records done/total
        observations.append(dg.AssetObservation(keys.merged_dataset, metadata=status.metadata()))
    if log is not None:
        log.debug(status.line(spec.name))
    return dg.SensorResult(run_requests=requests, asset_events=observations, cursor=json.dumps(summary))


warnings.filterwarnings("ignore", category=UserWarning, message=r'Field name "model" in "BedrockBatchPipeline"')


@dg.scaffold_with(BedrockBatchPipelineScaffolder)
class BedrockBatchPipeline(dg.Component, dg.Resolvable, PipelineSpec):
    """Amazon Bedrock batch inference over a dataset, as a group of Dagster assets.

    The attributes are the pipeline spec: a source (Parquet / CSV / JSONL, local or s3://), a model
    and prompt, and an s3:// output_uri. Rows become Bedrock batch requests, shards are submitted
    within the model's quotas, finished jobs are merged back onto their rows. ``name`` defaults to
    the component's folder name; ``{{ env.X }}`` works in any text field.

    Needs the resources ``s3`` (dagster-aws S3Resource), ``bedrock`` (BedrockBatchResource) and
    ``bedrock_ledger`` (JobLedgerResource) in the project.
    """

    # redeclared: Resolvable has a classmethod named ``model`` that pydantic would take for this field's default
    model: ModelSpec = Field(description="the Bedrock model and invocation type")
    automation_sensor: bool = Field(
        default=True,
        description="define a RUNNING automation sensor for this pipeline's assets; set false if your "
        "project's own automation sensor covers them",
    )

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        """The YAML schema: the spec's fields and bounds, checked before templates are rendered.

        (Resolvable's ``model()`` is shadowed by the spec's own ``model`` field, so it is not used.)
        """
        return schema_model(cls, frozenset({"name"}))

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> "BedrockBatchPipeline":
        raw = attributes.model_dump(exclude_unset=True) if attributes is not None else {}
        return cls.from_attributes(raw, Path(context.path), context.resolution_context)

    @classmethod
    def from_attributes(
        cls, raw: dict[str, Any], folder: Path, resolution: dg.ResolutionContext | None = None
    ) -> "BedrockBatchPipeline":
        """The pipeline a defs.yaml in ``folder`` describes: templates rendered, then fully validated."""
        raw = _render_templates(raw, (resolution or dg.ResolutionContext.default()).at_path("attributes"))
        raw.setdefault("name", folder.name)
        return parse_pipeline(raw, origin=str(defs_yaml(folder)), base_dir=folder, spec_class=cls)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_pipeline_defs(self, self.automation_sensor)


def defs_yaml(folder: Path) -> Path:
    for name in ("defs.yaml", "defs.yml", "component.yaml"):
        if (folder / name).exists():
            return folder / name
    return folder


def _render_templates(value: Any, context: Any) -> Any:
    """Render ``{{ ... }}`` templates in text fields; other text is kept exactly (prompts stay as written)."""
    if isinstance(value, dict):
        return {k: _render_templates(v, context.at_path(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_templates(v, context.at_path(i)) for i, v in enumerate(value)]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        rendered = context.resolve_value(value)
        return rendered if isinstance(rendered, str) or rendered is None else str(rendered)
    return value


__all__ = ["BedrockBatchPipeline", "PipelineKeys", "SpecError", "build_pipeline_defs", "completion_tick"]
