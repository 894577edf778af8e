"""A pipeline's ``__stop`` job: stop every job in flight, dequeue queued shards, start no further retry round;
and its ``__resume`` job, the way back: queue the dequeued shards again and allow retry rounds.

The work is ``bedrock.cancel``; each is recorded as an observation on merged_dataset.
"""

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from bedrock_assets.bedrock import cancel
from bedrock_assets.bedrock.orphans import stop_orphans
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter
from bedrock_assets.keys import stage_tags
from bedrock_assets.ledger import JobLedgerResource
from bedrock_assets.pipeline import Pipeline
from bedrock_assets.shards import mark_resumed, mark_stopped

HELD = "new work is held: no job is created and no retry round starts until the pipeline is resumed"


class StopConfig(dg.Config):
    """Run configuration of a pipeline's __stop job."""

    shards: list[str] = Field(
        default_factory=list,
        description="shard partitions to stop; empty: every job of the pipeline, and no further retry rounds",
    )
    orphans: bool = Field(
        default=False,
        description="instead: stop the jobs named like this pipeline's that its ledger does not hold (orphans)",
    )


def op_name(p: Pipeline) -> str:
    return f"{p.name}__stop_jobs"


def build(p: Pipeline) -> dg.JobDefinition:
    @dg.op(name=op_name(p), description=f"Stops the Bedrock jobs of {p.name!r}")
    def stop_jobs(
        context: dg.OpExecutionContext,
        config: StopConfig,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> str:
        if config.orphans:
            return _stop_orphans(context, p, bedrock, bedrock_ledger)
        report = cancel.stop_jobs(bedrock, bedrock_ledger.get_ledger(), p.name, config.shards or None, CallCounter())
        line = report.line(p.name)
        if not config.shards:
            mark_stopped(p.step(s3, bedrock))
            line += f"; {HELD} (bedrock-assets resume, or the {p.keys.job('resume')} job)"
        context.log.info(line)
        context.instance.report_runless_asset_event(
            dg.AssetObservation(
                p.keys.merged_dataset,
                metadata={
                    "stopped": line,
                    "stopped_shards": dg.MetadataValue.json(report.stopped + report.dequeued),
                },
            )
        )
        return line

    @dg.job(
        name=p.keys.job("stop"),
        tags=stage_tags(p.name, "stop"),
        description=f"{p.name}: stop every job in flight (StopModelInvocationJob), dequeue queued shards and "
        "start no further retry rounds; set shards in the config to stop only those",
    )
    def stop() -> None:
        stop_jobs()

    return stop


def _stop_orphans(
    context: dg.OpExecutionContext, p: Pipeline, bedrock: BedrockBatchResource, bedrock_ledger: JobLedgerResource
) -> str:
    stopped = stop_orphans(bedrock, p.spec.job_prefix, bedrock_ledger.get_ledger().attempts_of(p.name))
    line = f"[{p.name}] stopped {len(stopped)} orphan job(s)" + "".join(f"\n  {o.line()}" for o in stopped)
    context.log.info(line)
    context.instance.report_runless_asset_event(
        dg.AssetObservation(
            p.keys.merged_dataset,
            metadata={"stopped_orphans": dg.MetadataValue.json([o.job_arn for o in stopped])},
        )
    )
    return line


def resume_op_name(p: Pipeline) -> str:
    return f"{p.name}__resume_jobs"


def build_resume(p: Pipeline) -> dg.JobDefinition:
    @dg.op(name=resume_op_name(p), description=f"Resumes {p.name!r} after a stop")
    def resume_jobs(
        context: dg.OpExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource, bedrock_ledger: JobLedgerResource
    ) -> str:
        stopped_at = mark_resumed(p.step(s3, bedrock))
        queued = cancel.resume_shards(bedrock_ledger.get_ledger(), p.name)
        line = (
            f"[{p.name}] resumed"
            + (f" (stopped at {stopped_at})" if stopped_at else " (it was not stopped)")
            + f": {len(queued)} shard(s) queued again, retry rounds allowed; jobs that were stopped keep their "
            "outcome (resubmit_failed on batch_jobs makes a new attempt)"
        )
        context.log.info(line)
        context.instance.report_runless_asset_event(
            dg.AssetObservation(
                p.keys.merged_dataset, metadata={"resumed": line, "resumed_shards": dg.MetadataValue.json(queued)}
            )
        )
        return line

    @dg.job(
        name=p.keys.job("resume"),
        tags=stage_tags(p.name, "resume"),
        description=f"{p.name}: after a stop, queue the dequeued shards again and allow retry rounds",
    )
    def resume() -> None:
        resume_jobs()

    return resume
