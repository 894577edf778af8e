"""One pipeline as the nodes of its graph see it: built once from the spec, bound to resources per step.

``Pipeline`` is what a node's ``build`` is given when the definitions load: the spec, the names
Dagster knows its parts by, where its artifacts live and its model adapter (its ``output_schema``
parsed once). ``Step`` is what the work of one step (or sensor tick) is handed: the pipeline, S3 as
this pipeline uses it (bucket owner and KMS key on every call), the Bedrock resource, and the model's
quotas and price after the resource's overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from bedrock_assets.aws import shared
from bedrock_assets.bedrock.prices import ModelPrice, price_for
from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.errors import AWS_RETRY
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.models import ModelAdapter
from bedrock_assets.spec import PipelineSpec
from bedrock_assets.storage import S3Access


@dataclass(frozen=True)
class Pipeline:
    """A pipeline spec and what follows from it alone, worked out once."""

    spec: PipelineSpec
    keys: PipelineKeys
    layout: PipelineLayout
    adapter: ModelAdapter
    resend_adapter: ModelAdapter | None = None  # truncated structured answers are resent with it

    @classmethod
    def of(cls, spec: PipelineSpec) -> Pipeline:
        layout = PipelineLayout.for_uri(spec.output_uri)
        return cls(spec, PipelineKeys(spec.name), layout, spec.adapter(), spec.resend_adapter())

    @property
    def name(self) -> str:
        return self.spec.name

    def asset(self, key: dg.AssetKey, **settings: Any) -> Any:
        """The asset decorator of one of the pipeline's own assets (its group; AWS calls retry transient errors)."""
        return dg.asset(key=key, retry_policy=AWS_RETRY, group_name=self.name, **settings)

    @property
    def pool(self) -> str:
        """The Dagster concurrency pool of the shard steps (its limit is the deployment's)."""
        return self.spec.execution.pool or f"bedrock_assets/{self.name}"

    def shard_asset(self, key: dg.AssetKey, upstream: dg.AssetKey, **settings: Any) -> Any:
        """The asset decorator of a per-shard asset: the shard partitions, the shard group, one run per range
        of shards (a single-run backfill policy), the pipeline's pool, AWS calls retrying transient errors."""
        return dg.asset(
            key=key,
            retry_policy=AWS_RETRY,
            group_name=self.keys.shard_group,
            deps=[upstream],
            partitions_def=self.keys.partitions_def,
            backfill_policy=dg.BackfillPolicy.single_run(),
            pool=self.pool,
            **settings,
        )

    def step(self, s3: S3Resource, bedrock: BedrockBatchResource) -> Step:
        """The pipeline bound to a step's resources."""
        return self.bound(storage(self.spec, s3, bedrock), bedrock)

    def bound(self, s3: S3Access, bedrock: BedrockBatchResource) -> Step:
        """The pipeline with S3 access made already (a plain client in scripts and tests)."""
        quotas = self.spec.quotas(bedrock.quota_overrides)
        return Step(self, s3, bedrock, quotas, price_for(self.spec.model.id, bedrock.price_overrides))


@dataclass(frozen=True)
class Step:
    """What one step of a pipeline works with."""

    pipeline: Pipeline
    s3: S3Access
    bedrock: BedrockBatchResource
    quotas: BatchQuotas
    price: ModelPrice | None

    @classmethod
    def of(cls, spec: PipelineSpec, s3: S3Access, bedrock: BedrockBatchResource | None = None) -> Step:
        return Pipeline.of(spec).bound(s3, bedrock or BedrockBatchResource())

    @property
    def spec(self) -> PipelineSpec:
        return self.pipeline.spec

    @property
    def name(self) -> str:
        return self.pipeline.spec.name

    @property
    def keys(self) -> PipelineKeys:
        return self.pipeline.keys

    @property
    def layout(self) -> PipelineLayout:
        return self.pipeline.layout

    @property
    def adapter(self) -> ModelAdapter:
        return self.pipeline.adapter

    @property
    def resend_adapter(self) -> ModelAdapter | None:
        return self.pipeline.resend_adapter


def storage(spec: PipelineSpec, s3: S3Resource, bedrock: BedrockBatchResource) -> S3Access:
    """S3 as a pipeline uses it: its bucket owner and KMS key, else the bedrock resource's, on every call."""
    return S3Access(
        shared("s3", s3, s3.get_client),
        spec.expected_bucket_owner or bedrock.expected_bucket_owner,
        spec.kms_key_id or bedrock.output_kms_key_id,
    )
