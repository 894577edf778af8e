"""The resources a project with Bedrock batch pipelines provides, configured from the environment."""

from __future__ import annotations

import os
from typing import Any

from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.ledger import JobLedgerResource

LEDGER_TABLE_ENV = "BEDROCK_ASSETS_LEDGER_TABLE"
DEFAULT_LEDGER_TABLE = "bedrock-assets-jobs"


def bedrock_resources(**overrides: Any) -> dict[str, Any]:
    """``s3``, ``bedrock`` and ``bedrock_ledger`` with boto3's standard configuration (endpoints, region, profile).

    The ledger table is ``$BEDROCK_ASSETS_LEDGER_TABLE`` (default ``bedrock-assets-jobs``).
    """
    return {
        "s3": S3Resource(),
        "bedrock": BedrockBatchResource(),
        "bedrock_ledger": JobLedgerResource(table_name=os.environ.get(LEDGER_TABLE_ENV) or DEFAULT_LEDGER_TABLE),
        **overrides,
    }
