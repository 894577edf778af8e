"""A pipeline's ``__stop`` job: stop every job in flight, dequeue queued shards, start no further retry round.

The work is ``bedrock.cancel.stop_jobs``; the stop is recorded as an observation on merged_dataset.
"""

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from bedrock_assets.bedrock import cancel
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter
from bedrock_assets.keys import stage_tags
from bedrock_assets.ledger import JobLedgerResource
from bedrock_assets.pipeline import Pipeline
from bedrock_assets.shards import mark_stopped


class StopConfig(dg.Config):
    """Run configuration of a pipeline's __stop job."""

    shards: list[str] = Field(
        default_factory=list,
        description="shard partitions to stop; empty: every job of the pipeline, and no further retry rounds",
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
        report = cancel.stop_jobs(bedrock, bedrock_ledger.get_ledger(), p.name, config.shards or None, CallCounter())
        if not config.shards:
            mark_stopped(p.step(s3, bedrock))
        context.log.info(report.line(p.name))
        context.instance.report_runless_asset_event(
            dg.AssetObservation(
                p.keys.merged_dataset,
                metadata={
                    "stopped": report.line(p.name),
                    "stopped_shards": dg.MetadataValue.json(report.stopped + report.dequeued),
                },
            )
        )
        return report.line(p.name)

    @dg.job(
        name=p.keys.job("stop"),
        tags=stage_tags(p.name, "stop"),
        description=f"{p.name}: stop every job in flight (StopModelInvocationJob), dequeue queued shards and "
        "start no further retry rounds; set shards in the config to stop only those",
    )
    def stop() -> None:
        stop_jobs()

    return stop
