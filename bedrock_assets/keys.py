"""The names Dagster knows a pipeline's parts by: asset keys, partitions, groups, stage jobs, sensors and run tags."""

from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bedrock_assets.shards import span

TAG_PIPELINE = "bedrock_assets/pipeline"
TAG_STAGE = "bedrock_assets/stage"
TAG_SHARDS = "bedrock_assets/shards"
TAG_JOB_STATUS = "bedrock_assets/job_status"
# on the completion sensor's submit runs: the resubmission policy may renew Expired jobs (never on a rerun)
TAG_RENEW = "bedrock_assets/renew"
# the process executing a stage run (``processes.OWNER``), and the mark of a run whose process was found gone
TAG_OWNER = "bedrock_assets/owner"
TAG_OWNER_GONE = "bedrock_assets/owner_gone"


@dataclass(frozen=True)
class PipelineKeys:
    """Every name Dagster knows a pipeline's parts by."""

    pipeline: str

    def asset(self, node: str) -> dg.AssetKey:
        return dg.AssetKey([self.pipeline, node])

    @property
    def raw_dataset(self) -> dg.AssetKey:
        return self.asset("raw_dataset")

    @property
    def jsonl_shards(self) -> dg.AssetKey:
        return self.asset("jsonl_shards")

    @property
    def batch_jobs(self) -> dg.AssetKey:
        return self.asset("batch_jobs")

    @property
    def batch_job_outputs(self) -> dg.AssetKey:
        return self.asset("batch_job_outputs")

    @property
    def merged_results(self) -> dg.AssetKey:
        return self.asset("merged_results")

    @property
    def retry_rounds(self) -> dg.AssetKey:
        return self.asset("retry_rounds")

    @property
    def merged_dataset(self) -> dg.AssetKey:
        return self.asset("merged_dataset")

    @property
    def partitions(self) -> str:
        return f"{self.pipeline}__shards"

    @property
    def partitions_def(self) -> dg.DynamicPartitionsDefinition:
        """The shard partitions (first pass ``s00000``..., retry rounds ``r1-00000``...) of the shard assets."""
        return dg.DynamicPartitionsDefinition(name=self.partitions)

    @property
    def shard_group(self) -> str:
        """The group of the per-shard assets (the pipeline's own group holds raw_dataset and merged_dataset)."""
        return f"{self.pipeline}__shards"

    @property
    def selection(self) -> dg.AssetSelection:
        return dg.AssetSelection.key_prefixes(self.pipeline)

    def job(self, stage: str) -> str:
        """Asset job of one stage: prepare, submit, merge, retry or publish (and the op job ``stop``)."""
        return f"{self.pipeline}__{stage}"

    @property
    def completion_sensor(self) -> str:
        return f"{self.pipeline}__job_completion"

    @property
    def automation_sensor(self) -> str:
        return f"{self.pipeline}__automation"


STAGES = {
    "prepare": ("raw_dataset",),
    "submit": ("jsonl_shards", "batch_jobs"),
    "merge": ("batch_job_outputs", "merged_results"),
    "retry": ("retry_rounds",),
    "publish": ("merged_dataset",),
}


def stage_tags(pipeline: str, stage: str, shards: list[str] | None = None) -> dict[str, str]:
    tags = {TAG_PIPELINE: pipeline, TAG_STAGE: stage}
    if shards:
        tags[TAG_SHARDS] = span(shards)
    return tags


def partition_tags(shards: list[str]) -> dict[str, str]:
    """Run tags that make one run cover these consecutive shard partitions."""
    if len(shards) < 2:
        return {}
    return {ASSET_PARTITION_RANGE_START_TAG: shards[0], ASSET_PARTITION_RANGE_END_TAG: shards[-1]}
