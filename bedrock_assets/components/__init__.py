"""Dagster components of bedrock_assets (the ``dagster_dg_cli.registry_modules`` entry point)."""

from bedrock_assets.components.bedrock_batch_pipeline import BedrockBatchPipeline

__all__ = ["BedrockBatchPipeline"]
