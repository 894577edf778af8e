"""Tests for the local stack's bedrock-runtime InvokeModel / Converse, served on the same endpoint."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from bedrock_assets.local_stack import FaultConfig, LocalStack
from bedrock_assets_tests.local_stack.helpers import make_client

ROLE = "arn:aws:iam::123456789012:role/BedrockBatchRole"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
TERMINAL = {"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"}
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture(autouse=True)
def reset(stack: LocalStack) -> Iterator[None]:
    stack.configure(**FaultConfig().to_dict(), time_scale=0)
    stack.emulator.runtime.reset_counts()
    yield
    stack.configure(**FaultConfig().to_dict(), time_scale=0)


@pytest.fixture
def runtime(stack: LocalStack) -> Any:
    return make_client(stack, "bedrock-runtime", config=NO_RETRY)


def claude_body(i: int, **overrides: Any) -> dict:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"Summarize document number {i}."}]}],
    }
    return {**body, **overrides}


def converse_request(i: int) -> dict:
    return {
        "messages": [{"role": "user", "content": [{"text": f"Question number {i}?"}]}],
        "system": [{"text": "Be brief"}],
        "inferenceConfig": {"maxTokens": 300, "temperature": 0.2},
    }


def batch_outputs(stack: LocalStack, model: str, bodies: list[dict], invocation: str = "InvokeModel") -> dict:
    """Run a batch job over ``bodies`` (recordIds b0000...) and return its output lines by recordId."""
    s3, bedrock = make_client(stack, "s3"), make_client(stack, "bedrock")
    bucket = f"rt-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    lines = [json.dumps({"recordId": f"b{i:04d}", "modelInput": b}) for i, b in enumerate(bodies)]
    s3.put_object(Bucket=bucket, Key="in/data.jsonl", Body="\n".join(lines).encode())
    arn = bedrock.create_model_invocation_job(
        jobName=f"rt-{uuid.uuid4().hex[:10]}",
        roleArn=ROLE,
        modelId=model,
        modelInvocationType=invocation,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    )["jobArn"]
    deadline = time.time() + 15
    while bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] not in TERMINAL and time.time() < deadline:
        time.sleep(0.05)
    key = f"out/{arn.rsplit('/', 1)[-1]}/data.jsonl.out"
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return {o["recordId"]: o for o in map(json.loads, text.splitlines())}


def error_code(err: pytest.ExceptionInfo) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# ---- answers equal the batch job's modelOutput -------------------------------------------------


def test_invoke_model_claude_matches_batch_output(stack: LocalStack, runtime: Any) -> None:
    bodies = [claude_body(i) for i in range(100)]
    batch = batch_outputs(stack, CLAUDE, bodies)
    for i in (0, 42, 99):
        resp = runtime.invoke_model(modelId=CLAUDE, body=json.dumps(bodies[i]), contentType="application/json")
        assert resp["contentType"] == "application/json"
        answer = json.loads(resp["body"].read())
        assert answer == batch[f"b{i:04d}"]["modelOutput"]
        assert answer["type"] == "message" and answer["content"][0]["text"].startswith("[emulated]")
        headers = resp["ResponseMetadata"]["HTTPHeaders"]
        assert int(headers["x-amzn-bedrock-input-token-count"]) == answer["usage"]["input_tokens"]
        assert int(headers["x-amzn-bedrock-output-token-count"]) == answer["usage"]["output_tokens"]


def test_invoke_model_titan_embeddings_matches_batch_output(stack: LocalStack, runtime: Any) -> None:
    bodies = [{"inputText": f"text {i}", "dimensions": 256} for i in range(100)]
    batch = batch_outputs(stack, TITAN, bodies)
    resp = runtime.invoke_model(modelId=TITAN, body=json.dumps(bodies[7]))
    answer = json.loads(resp["body"].read())
    assert answer == batch["b0007"]["modelOutput"]
    assert len(answer["embedding"]) == 256 and abs(np.linalg.norm(answer["embedding"]) - 1.0) < 1e-5
    # the model may be named by its foundation-model ARN (URL-encoded '/' and ':' in the path)
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{TITAN}"
    assert json.loads(runtime.invoke_model(modelId=arn, body=json.dumps(bodies[7]))["body"].read()) == answer


def test_converse_matches_batch_converse_output(stack: LocalStack, runtime: Any) -> None:
    model = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    requests = [converse_request(i) for i in range(100)]
    batch = batch_outputs(stack, model, requests, invocation="Converse")
    resp = runtime.converse(modelId=model, **requests[3])
    assert resp["serviceTier"] == {"type": "default"}  # the tier that served it (ConverseResponse.serviceTier)
    answer = {k: v for k, v in resp.items() if k not in ("ResponseMetadata", "serviceTier")}
    assert answer == batch["b0003"]["modelOutput"]
    assert answer["output"]["message"]["role"] == "assistant" and answer["stopReason"] == "end_turn"
    usage = answer["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    # runtime-only request members (not part of a batch record) are accepted and do not change the answer
    again = runtime.converse(modelId=model, performanceConfig={"latency": "standard"}, **requests[3])
    assert again["output"] == answer["output"]


# ---- validation and the model catalog ----------------------------------------------------------


NOVA_PRO = "amazon.nova-pro-v1:0"


def test_service_tiers_are_served_where_the_model_offers_them(stack: LocalStack, runtime: Any) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 20}}
    stack.emulator.runtime.reset_counts()
    flex = runtime.converse(modelId=NOVA_PRO, serviceTier={"type": "flex"}, **body)
    assert flex["serviceTier"] == {"type": "flex"}
    plain = runtime.converse(modelId=NOVA_PRO, **body)
    assert {k: v for k, v in flex.items() if k not in ("ResponseMetadata", "serviceTier")} == {
        k: v for k, v in plain.items() if k not in ("ResponseMetadata", "serviceTier")
    }  # the tier changes the price and the speed, not the answer
    invoked = runtime.invoke_model(modelId=NOVA_PRO, body=json.dumps(body), serviceTier="priority")
    assert invoked["serviceTier"] == "priority"  # X-Amzn-Bedrock-Service-Tier of the response
    assert stack.emulator.runtime.tiers() == {"flex": 1, "default": 1, "priority": 1}


@pytest.mark.parametrize(
    ("model", "tier", "message"),
    [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "flex", "does not support the flex service tier"),
        (NOVA_PRO, "reserved", "Reservation not found"),
        (NOVA_PRO, "turbo", "service tier is invalid"),
    ],
)
def test_service_tier_a_model_is_not_offered_at_is_refused(runtime: Any, model: str, tier: str, message: str) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 20}}
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=model, serviceTier={"type": tier}, **body)
    assert e.value.response["Error"]["Code"] == "ValidationException" and message in str(e.value)
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId=model, body=json.dumps(body), serviceTier=tier)
    assert e.value.response["Error"]["Code"] == "ValidationException" and message in str(e.value)


def test_bad_body_is_rejected_with_the_batch_record_message(stack: LocalStack, runtime: Any) -> None:
    bad = claude_body(0)
    bad.pop("anthropic_version")
    batch = batch_outputs(stack, CLAUDE, [claude_body(i) for i in range(100)] + [bad])
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=CLAUDE, body=json.dumps(bad))
    assert error_code(err) == ("ValidationException", 400)
    assert err.value.response["Error"]["Message"] == batch["b0100"]["error"]["errorMessage"]
    assert "anthropic_version" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=CLAUDE, body=b"{not json")
    assert error_code(err) == ("ValidationException", 400)
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": []}])
    assert error_code(err) == ("ValidationException", 400) and "messages.0.content" in str(err.value)
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=TITAN, body=json.dumps({"inputText": "x" * 50_001}))
    assert err.value.response["Error"]["Message"] == "Input is too long for requested model."


@pytest.mark.parametrize("model", ["anthropic.claude-made-up", "openai.gpt-9", "us.amazon.nova-mega-v9:0"])
def test_unknown_model_is_rejected(runtime: Any, model: str) -> None:
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=model, body=json.dumps(claude_body(0)))
    assert error_code(err) == ("ValidationException", 400)
    assert err.value.response["Error"]["Message"] == "The provided model identifier is invalid."


def test_runtime_answers_models_without_batch_support(runtime: Any) -> None:
    opus4 = "us.anthropic.claude-opus-4-20250514-v1:0"  # on-demand only: no batch, but InvokeModel works
    answer = json.loads(runtime.invoke_model(modelId=opus4, body=json.dumps(claude_body(1)))["body"].read())
    assert answer["model"] == opus4


def test_converse_refuses_embedding_models(runtime: Any) -> None:
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=TITAN, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert error_code(err) == ("ValidationException", 400) and "doesn't support the model" in str(err.value)


# ---- faults ------------------------------------------------------------------------------------


def test_outage_answers_503(stack: LocalStack, runtime: Any) -> None:
    stack.configure(unavailable_until=time.time() + 60)
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=CLAUDE, body=json.dumps(claude_body(0)))
    assert error_code(err) == ("ServiceUnavailableException", 503)
    stack.configure(unavailable_until=0)
    runtime.invoke_model(modelId=CLAUDE, body=json.dumps(claude_body(0)))


def test_throttle_every(stack: LocalStack, runtime: Any) -> None:
    stack.configure(throttle_every=3)
    outcomes = []
    for i in range(6):
        try:
            runtime.converse(modelId="amazon.nova-micro-v1:0", **converse_request(i))
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes == ["ok", "ok", "ThrottlingException"] * 2
    assert stack.emulator.runtime.errors()["Converse"] == 2


def outcome(runtime: Any, body: dict) -> str:
    try:
        runtime.invoke_model(modelId=CLAUDE, body=json.dumps(body))
        return "ok"
    except ClientError as exc:
        return f"{exc.response['Error']['Code']}:{exc.response['ResponseMetadata']['HTTPStatusCode']}"


def test_record_error_rate_is_per_call_and_retryable(stack: LocalStack, runtime: Any) -> None:
    stack.configure(record_error_rate=0.5)
    first = [outcome(runtime, claude_body(i)) for i in range(60)]
    failed = [i for i, o in enumerate(first) if o != "ok"]
    assert set(first) == {"ok", "ThrottlingException:429", "InternalServerException:500"}
    assert 10 < len(failed) < 50
    # retrying the same bodies draws afresh: every one succeeds within a few attempts
    for i in failed:
        assert any(outcome(runtime, claude_body(i)) == "ok" for _ in range(30))
    # deterministic: with the call history forgotten, the same calls fail the same way
    stack.emulator.runtime.reset_counts()
    assert [outcome(runtime, claude_body(i)) for i in range(60)] == first
    # a retrying client (standard mode retries 429 and 500) gets through
    retrying = make_client(stack, "bedrock-runtime", config=Config(retries={"mode": "standard", "max_attempts": 10}))
    resp = retrying.invoke_model(modelId=CLAUDE, body=json.dumps(claude_body(failed[0])))
    assert json.loads(resp["body"].read())["type"] == "message"


def test_full_error_rate_fails_every_call(stack: LocalStack, runtime: Any) -> None:
    stack.configure(record_error_rate=1.0)
    assert all(outcome(runtime, claude_body(i)) != "ok" for i in range(10))


# ---- call counters -----------------------------------------------------------------------------


def test_runtime_calls_are_counted_per_operation(stack: LocalStack, runtime: Any) -> None:
    assert stack.runtime_calls() == {"InvokeModel": 0, "Converse": 0}
    for i in range(3):
        runtime.invoke_model(modelId=CLAUDE, body=json.dumps(claude_body(i)))
    runtime.converse(modelId="amazon.nova-pro-v1:0", **converse_request(0))
    with pytest.raises(ClientError):
        runtime.invoke_model(modelId="anthropic.claude-made-up", body=b"{}")
    assert stack.runtime_calls() == {"InvokeModel": 4, "Converse": 1}
    assert stack.emulator.runtime.errors() == {"InvokeModel": 1, "Converse": 0}
    with urllib.request.urlopen(f"{stack.endpoint_url}/_emulator/health") as resp:
        health = json.load(resp)
    assert health["runtime_calls"] == {"InvokeModel": 4, "Converse": 1}
    assert health["runtime_errors"] == {"InvokeModel": 1, "Converse": 0}
    # the batch API is not counted as runtime calls
    make_client(stack, "bedrock").list_model_invocation_jobs(maxResults=1)
    assert stack.runtime_calls() == {"InvokeModel": 4, "Converse": 1}
    reset = urllib.request.Request(f"{stack.endpoint_url}/_emulator/runtime/reset", method="POST", data=b"")
    with urllib.request.urlopen(reset) as resp:
        assert json.load(resp)["runtime_calls"] == {"InvokeModel": 0, "Converse": 0}
    assert stack.runtime_calls() == {"InvokeModel": 0, "Converse": 0}


def test_unemulated_runtime_operations_are_refused(stack: LocalStack) -> None:
    stream_client = make_client(stack, "bedrock-runtime", config=NO_RETRY)
    with pytest.raises(ClientError) as err:
        stream_client.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(claude_body(0)))
    assert error_code(err)[1] == 404
