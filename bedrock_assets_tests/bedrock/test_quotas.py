"""Batch quotas per model: the documented defaults, what differs per model, overrides."""

from __future__ import annotations

from bedrock_assets.bedrock.quotas import GB, quotas_for
from bedrock_assets_tests.models.oracles import COHERE, LLAMA3, LLAMA4, MISTRAL, MISTRAL_CHAT, NOVA, SCOUT


def test_documented_quota_differences_per_model():
    scout = quotas_for(SCOUT)
    assert scout.min_records_per_job == 50 and scout.max_records_per_job == 50_000
    assert quotas_for("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0").max_job_bytes == 100 * GB
    assert quotas_for("amazon.nova-pro-v1:0").max_shard_bytes == 1 * GB  # one file per job: the file limit binds
    for model in (LLAMA3, LLAMA4, MISTRAL, MISTRAL_CHAT, NOVA, COHERE, "amazon.nova-lite-v1:0"):
        q = quotas_for(model)
        assert (q.min_records_per_job, q.max_records_per_job, q.max_job_bytes) == (100, 50_000, 5 * GB)
    assert quotas_for(SCOUT, {SCOUT: {"min_records_per_job": 80}}).min_records_per_job == 80  # overrides still win
