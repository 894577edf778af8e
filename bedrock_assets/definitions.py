"""The Dagster code location: one asset group per pipeline of the spec file.

The spec file is ``$BEDROCK_ASSETS_SPEC``, or the bundled sample pipelines when unset.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
)
from dagster_aws.s3 import S3Resource

from bedrock_assets.assets import PipelineDefs, build_pipeline
from bedrock_assets.bedrock import BedrockBatchResource
from bedrock_assets.ledger import JobLedgerResource
from bedrock_assets.spec import PipelineSpec, load_specs

SAMPLE_SPEC = Path(__file__).parent / "sample" / "pipelines.yaml"
SPEC_ENV = "BEDROCK_ASSETS_SPEC"
LEDGER_TABLE_ENV = "BEDROCK_ASSETS_LEDGER_TABLE"


def spec_path() -> Path:
    return Path(os.environ.get(SPEC_ENV) or SAMPLE_SPEC)


def default_resources() -> dict:
    return {
        "s3": S3Resource(),
        "bedrock": BedrockBatchResource(),
        "ledger": JobLedgerResource(table_name=os.environ.get(LEDGER_TABLE_ENV, "bedrock-assets-jobs")),
    }


def build_definitions(specs: list[PipelineSpec], resources: dict | None = None) -> tuple[Definitions, list[PipelineDefs]]:
    pipelines = [build_pipeline(spec) for spec in specs]
    automation = AutomationConditionSensorDefinition(
        "bedrock_assets_automation",
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=15,
    )
    defs = Definitions(
        assets=[a for p in pipelines for a in p.assets],
        sensors=[p.sensor for p in pipelines] + [automation],
        resources=resources or default_resources(),
    )
    return defs, pipelines


defs, PIPELINES = build_definitions(load_specs(spec_path()))
