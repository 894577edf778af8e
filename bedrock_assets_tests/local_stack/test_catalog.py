"""The model catalog: which models take batch jobs, by id, inference profile and ARN."""

from __future__ import annotations

from typing import Any

import pytest

from bedrock_assets.local_stack.catalog import CATALOG, batch_model_error, lookup, runtime_model_error
from bedrock_assets_tests.local_stack.helpers import (
    claude_records,
    create_job,
    put_jsonl,
    wait_terminal,
)


def test_the_catalog_emulates_every_invoke_model_family() -> None:
    families = {
        "amazon.nova-pro-v1:0": ("nova", True),
        "meta.llama4-scout-17b-instruct-v1:0": ("llama", True),
        "mistral.mistral-small-2402-v1:0": ("mistral", True),
        "mistral.mistral-large-2407-v1:0": ("mistral-chat", True),
        "mistral.mixtral-8x7b-instruct-v0:1": ("mistral", False),
        "cohere.embed-multilingual-v3": ("cohere-embed", True),
        "amazon.titan-embed-text-v1": ("titan-embed-v1", False),  # not in the batch inference model list
    }
    for model, (family, batch) in families.items():
        info = lookup(model)
        assert (info.family, info.batch) == (family, batch), model
        assert runtime_model_error(model) is None


def test_accepts_inference_profile_ids_and_arns(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    for model in (
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
        "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "apac.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
    ):
        assert wait_terminal(bedrock, create_job(bedrock, bucket, model=model))["status"] == "Completed"


REPO_MODEL_IDS = [
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-opus-20240229-v1:0",
    "amazon.titan-embed-text-v2:0",
    "us.amazon.nova-lite-v1:0",
    "us.amazon.nova-pro-v1:0",
    "us.anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "eu.anthropic.claude-3-haiku-20240307-v1:0",
    "global.anthropic.claude-sonnet-4-20250514-v1:0",
]


BATCH_CATALOG_SAMPLE = [
    "amazon.nova-micro-v1:0",
    "amazon.nova-premier-v1:0",
    "meta.llama3-1-405b-instruct-v1:0",
    "meta.llama3-3-70b-instruct-v1:0",
    "meta.llama4-scout-17b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0",
    "cohere.embed-english-v3",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
]


@pytest.mark.parametrize("model", REPO_MODEL_IDS + BATCH_CATALOG_SAMPLE)
def test_catalogued_batch_models_are_accepted(model: str) -> None:
    assert batch_model_error(model) is None
    assert lookup(model) is not None and lookup(model).batch


def test_catalog_entries_are_consistent() -> None:
    for model_id, info in CATALOG.items():
        assert info.model_id == model_id and lookup("us." + model_id) == info
        if info.batch and info.family:
            assert batch_model_error(model_id) is None
        elif not info.batch:
            assert "does not support batch inference" in batch_model_error(model_id)
