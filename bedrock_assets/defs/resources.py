"""The resources of this project's pipelines: boto3's standard configuration (AWS, or the local stack)."""

import dagster as dg

from bedrock_assets.resources import bedrock_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=bedrock_resources())
