"""Where a pipeline's artifacts live under its output_uri (the layout the README documents)."""

from __future__ import annotations

from bedrock_assets.layout import PipelineLayout


def test_every_artifact_has_its_documented_key():
    layout = PipelineLayout.for_uri("s3://bkt/bedrock/cot")
    assert [
        layout.shard_index.uri,
        layout.shard_rows("s00001").uri,
        layout.shard_input("s00001").uri,
        layout.job_output("r1-00000").uri,
        layout.outputs("s00001").uri,
        layout.merged("s00001").uri,
        layout.retry_state.uri,
        layout.merged_dataset.uri,
    ] == [
        "s3://bkt/bedrock/cot/canonical/_shards.json",
        "s3://bkt/bedrock/cot/canonical/s00001.parquet",
        "s3://bkt/bedrock/cot/shards/s00001/input.jsonl",
        "s3://bkt/bedrock/cot/jobs/r1-00000",
        "s3://bkt/bedrock/cot/outputs/s00001.parquet",
        "s3://bkt/bedrock/cot/merged/s00001.parquet",
        "s3://bkt/bedrock/cot/retries/_rounds.json",
        "s3://bkt/bedrock/cot/merged_dataset/data.parquet",
    ]
