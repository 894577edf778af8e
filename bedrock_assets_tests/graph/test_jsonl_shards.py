"""jsonl_shards: an input file outside the model's batch quotas is named with what it breaks."""

from __future__ import annotations

from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.graph.jsonl_shards import ShardInput


def test_an_input_outside_the_quotas_says_which_limit_it_breaks():
    quotas = BatchQuotas(
        min_records_per_job=100, max_records_per_file=500, max_records_per_job=400, max_file_bytes=10_000
    )
    assert ShardInput("s00000", 400, 10_000, "s3://b/i").violation(quotas) is None
    assert ShardInput("s00000", 99, 10, "s3://b/i").violation(quotas) == "99 records, outside 100-400"
    assert ShardInput("s00000", 401, 10, "s3://b/i").violation(quotas) == "401 records, outside 100-400"
    assert ShardInput("s00000", 100, 10_001, "s3://b/i").violation(quotas) == "10001 bytes, over 10000"
