"""Amazon Bedrock batch inference at scale as Dagster software-defined assets."""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BedrockBatchPipeline": "bedrock_assets.components.bedrock_batch_pipeline",
    "BedrockBatchResource": "bedrock_assets.bedrock.resource",
    "JobLedgerResource": "bedrock_assets.ledger",
    "SharedS3Resource": "bedrock_assets.resources",
    "read_merged_dataset": "bedrock_assets.graph.merged_dataset",
}


def __getattr__(name: str) -> Any:  # imported on first use: `bedrock-assets local-stack` needs no Dagster
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bedrock_assets' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
