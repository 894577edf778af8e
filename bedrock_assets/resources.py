"""The resources a project with Bedrock batch pipelines provides, configured from the environment."""

from __future__ import annotations

import os
from typing import Any

from dagster_aws.s3 import S3Resource

from bedrock_assets.aws import shared
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.ledger import JobLedgerResource

LEDGER_TABLE_ENV = "BEDROCK_ASSETS_LEDGER_TABLE"
DEFAULT_LEDGER_TABLE = "bedrock-assets-jobs"


class SharedS3Resource(S3Resource):
    """dagster-aws's S3Resource with one client per process and configuration: the plain one makes a new
    session and client (about a quarter of a second) for every step it is given to."""

    def get_client(self) -> Any:
        return shared("s3", self, lambda: S3Resource.get_client(self))


def bedrock_resources(**overrides: Any) -> dict[str, Any]:
    """``s3``, ``bedrock`` and ``bedrock_ledger`` with boto3's standard configuration (endpoints, region, profile).

    The ledger table is ``$BEDROCK_ASSETS_LEDGER_TABLE`` (default ``bedrock-assets-jobs``).
    """
    return {
        "s3": SharedS3Resource(),
        "bedrock": BedrockBatchResource(),
        "bedrock_ledger": JobLedgerResource(table_name=os.environ.get(LEDGER_TABLE_ENV) or DEFAULT_LEDGER_TABLE),
        **overrides,
    }
