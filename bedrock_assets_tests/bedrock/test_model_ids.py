"""Model identity: an id, an inference profile and an ARN of one base model are one model."""

from __future__ import annotations

from bedrock_assets.bedrock.model_ids import base_model_id, model_key

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"


def test_profiles_and_arns_reduce_to_the_base_model():
    for name in (
        CLAUDE,
        f"us.{CLAUDE}",
        f"global.{CLAUDE}",
        f"us-gov.{CLAUDE}",
        f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}",
        f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.{CLAUDE}",
    ):
        assert model_key(name) == CLAUDE, name
    assert base_model_id("amazon.titan-embed-text-v2:0") == "amazon.titan-embed-text-v2:0"  # "amazon" is no profile
