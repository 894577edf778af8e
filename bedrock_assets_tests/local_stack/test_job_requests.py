"""CreateModelInvocationJob's request constraints: what the service refuses, refused with its field."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from bedrock_assets.local_stack import LocalStack
from bedrock_assets_tests.local_stack.helpers import (
    CLAUDE,
    ROLE,
    TITAN,
    claude_records,
    create_job,
    make_client,
    put_jsonl,
)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"jobName": "bad_name"}, "jobName"),
        ({"timeoutDurationInHours": 12}, "timeoutDurationInHours"),
        ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://Bad_Bucket/in/"}}}, "s3Uri"),
        ({"outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "https://example.com/out"}}}, "s3Uri"),
        ({"modelId": "openai.gpt-9"}, "modelId"),
        ({"modelId": "anthropic.claude-made-up"}, "is invalid"),
        ({"modelId": "us.anthropic.claude-made-up-v1:0"}, "is invalid"),
        ({"modelId": "anthropic.claude-opus-4-20250514-v1:0"}, "does not support batch inference"),
        ({"modelId": "amazon.titan-embed-text-v1"}, "does not support batch inference"),
        ({"modelId": "cohere.command-r-v1:0"}, "does not support batch inference"),
        ({"modelId": "arn:aws:bedrock:us-east-1::foundation-model/us.amazon.nova-lite-v1:0"}, "is invalid"),
        ({"modelId": "arn:aws:bedrock:us-east-1:123456789012:inference-profile/amazon.nova-lite-v1:0"}, "is invalid"),
        ({"modelId": "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123"}, "provisioned"),
        ({"roleArn": "arn:aws:iam::123:user/bob"}, "roleArn"),
        ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://{bucket}/missing.jsonl"}}}, "input"),
        ({"modelId": TITAN, "modelInvocationType": "Converse"}, "Converse"),
    ],
)
def test_create_validation_errors(stack: LocalStack, s3: Any, bucket: str, overrides: dict, field: str) -> None:
    # client-side validation off, so the emulator's own checks are exercised (e.g. timeout 12)
    bedrock = make_client(stack, "bedrock", config=Config(parameter_validation=False))
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    overrides = json.loads(json.dumps(overrides).replace("{bucket}", bucket))
    with pytest.raises(ClientError) as err:
        create_job(bedrock, bucket, **overrides)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert field in err.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "tag", [{"key": "aws:owner", "value": "x"}, {"key": "bad#key", "value": "x"}, {"key": "k", "value": "v" * 257}]
)
def test_tags_the_service_refuses_are_refused(stack: LocalStack, s3: Any, bedrock: Any, bucket: str, tag) -> None:
    uri = f"s3://{bucket}/in/tags.jsonl"
    s3.put_object(Bucket=bucket, Key="in/tags.jsonl", Body=b'{"recordId": "r1", "modelInput": {}}\n')
    with pytest.raises(ClientError) as info:
        bedrock.create_model_invocation_job(
            jobName=f"tags-{uuid.uuid4().hex[:8]}",
            roleArn=ROLE,
            modelId=CLAUDE,
            tags=[tag],
            inputDataConfig={"s3InputDataConfig": {"s3Uri": uri}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
        )
    assert info.value.response["Error"]["Code"] == "ValidationException" and "tags.1.member" in str(info.value)
