"""Clients, records and jobs for the local stack's own tests."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3

from bedrock_assets.local_stack import FaultConfig, LocalStack

ROLE = "arn:aws:iam::123456789012:role/BedrockBatchRole"


CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


TITAN = "amazon.titan-embed-text-v2:0"


NOVA = "us.amazon.nova-lite-v1:0"


TERMINAL = {"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"}


DEFAULTS = {**FaultConfig().to_dict(), "time_scale": 0.0}


def make_client(stack: LocalStack, service: str, **kwargs: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **kwargs,
    )


def uid(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def claude_input(i: int, **overrides: Any) -> dict:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"Summarize document number {i}."}]}],
    }
    body.update(overrides)
    return body


def put_jsonl(s3: Any, bucket: str, key: str, records: list[dict]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body="\n".join(json.dumps(r) for r in records).encode() + b"\n")


def claude_records(n: int, prefix: str = "r") -> list[dict]:
    return [{"recordId": f"{prefix}{i:05d}", "modelInput": claude_input(i)} for i in range(n)]


def create_job(bedrock: Any, bucket: str, input_key: str = "in/", model: str = CLAUDE, **kwargs: Any) -> str:
    params = dict(
        jobName=uid(),
        roleArn=ROLE,
        modelId=model,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/{input_key}", "s3InputFormat": "JSONL"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    )
    params.update(kwargs)
    return bedrock.create_model_invocation_job(**params)["jobArn"]


def wait_terminal(bedrock: Any, arn: str, timeout: float = 15.0) -> dict:
    deadline = time.time() + timeout
    while True:
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in TERMINAL or time.time() > deadline:
            return job
        time.sleep(0.05)


def read_out(s3: Any, bucket: str, key: str) -> list[dict]:
    return [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()]


def job_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def error_ids(s3: Any, bucket: str, arn: str, name: str = "data.jsonl") -> set[str]:
    return {o["recordId"] for o in read_out(s3, bucket, f"out/{job_id(arn)}/{name}.out") if "error" in o}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


# a body of each InvokeModel family, with a model of that family
FAMILY_BODIES = {
    "claude": (CLAUDE, claude_input(0)),
    "nova": (
        "amazon.nova-micro-v1:0",
        {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "system": [{"text": "Be brief"}],
            "inferenceConfig": {"maxTokens": 100, "topK": 20},
        },
    ),
    "llama": (
        "meta.llama3-3-70b-instruct-v1:0",
        {
            "prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            "max_gen_len": 100,
            "temperature": 0.5,
        },
    ),
    "mistral": (
        "mistral.mistral-small-2402-v1:0",
        {"prompt": "<s>[INST] Hi [/INST]", "max_tokens": 100, "stop": ["."]},
    ),
    "mistral-chat": (
        "mistral.mistral-large-2407-v1:0",
        {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}], "max_tokens": 100},
    ),
    "cohere": ("cohere.embed-english-v3", {"texts": ["Hi"], "input_type": "search_query"}),
    "titan-v2": (TITAN, {"inputText": "Hi", "dimensions": 256, "normalize": True}),
    "titan-v1": ("amazon.titan-embed-text-v1", {"inputText": "Hi"}),
}
