"""Tests for the local stack: moto S3/DynamoDB plus the Bedrock batch-inference emulator."""

from __future__ import annotations

import io
import json
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from bedrock_assets.local_stack import BatchJobEmulator, FaultConfig, LocalStack, jobs, synthetic
from bedrock_assets.local_stack.catalog import CATALOG, batch_model_error, lookup, runtime_model_error
from bedrock_assets.local_stack.jobs import answer_chunk
from bedrock_assets.local_stack.synthetic import (
    INPUT_TOO_LONG,
    format_vectors,
    round_significant,
    synthesize_batch,
    synthesize_bulk,
)
from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.records import derived_record_ids, request_lines
from bedrock_assets.structured import OutputSchema

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


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(port=0, time_scale=0) as st:
        yield st


@pytest.fixture(autouse=True)
def reset_knobs(stack: LocalStack) -> Iterator[None]:
    stack.configure(**DEFAULTS)
    yield
    stack.configure(**DEFAULTS)


@pytest.fixture
def s3(stack: LocalStack) -> Any:
    return make_client(stack, "s3")


@pytest.fixture
def bedrock(stack: LocalStack) -> Any:
    return make_client(stack, "bedrock")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"bkt-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


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


# ---- moto services through the same endpoint ---------------------------------------------------


def test_s3_and_dynamodb_share_the_endpoint(stack: LocalStack, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello"
    ddb = make_client(stack, "dynamodb")
    table = uid("tbl")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "k1"}, "n": {"N": "3"}})
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "k1"}})["Item"]["n"] == {"N": "3"}


def test_env_points_default_clients_at_stack(stack: LocalStack, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = stack.env()
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint_url and env["AWS_REGION"] == "us-east-1"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    names = [b["Name"] for b in boto3.session.Session().client("s3").list_buckets()["Buckets"]]
    assert bucket in names


def test_control_endpoint(stack: LocalStack) -> None:
    with urllib.request.urlopen(f"{stack.endpoint_url}/_emulator/health") as resp:
        assert json.load(resp)["status"] == "ok"
    req = urllib.request.Request(
        f"{stack.endpoint_url}/_emulator/config",
        method="POST",
        data=json.dumps({"drop_rate": 0.5, "time_scale": 1.5, "concurrency_limits": {CLAUDE: 3}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        cfg = json.load(resp)
    assert cfg["drop_rate"] == 0.5 and cfg["time_scale"] == 1.5 and cfg["concurrency_limits"][CLAUDE] == 3
    assert stack.emulator.faults.drop_rate == 0.5
    stack.configure(concurrency_limits={CLAUDE: None})


# ---- API round trip and state machine -----------------------------------------------------------


def test_create_get_list_stop_round_trip(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(120))
    stack.configure(time_scale=0.3)
    name = uid("roundtrip")
    arn = create_job(bedrock, bucket, jobName=name, tags=[{"key": "team", "value": "ml"}], timeoutDurationInHours=72)
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/")
    assert len(job_id(arn)) == 12 and job_id(arn).isalnum() and job_id(arn).islower()
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Submitted" and job["jobName"] == name and job["modelId"] == CLAUDE
    assert job["timeoutDurationInHours"] == 72 and job["totalRecordCount"] == 0
    assert bedrock.get_model_invocation_job(jobIdentifier=job_id(arn))["jobArn"] == arn
    listed = bedrock.list_model_invocation_jobs(nameContains=name)["invocationJobSummaries"]
    assert [j["jobArn"] for j in listed] == [arn]
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping"
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "Stopped" and "endTime" in job
    assert job["processedRecordCount"] == 0  # stopped before InProgress: no output at all
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=f"out/{job_id(arn)}/")
    with pytest.raises(ClientError) as err:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_filters_sorting_and_pagination(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    tag = uuid.uuid4().hex[:8]
    arns = [create_job(bedrock, bucket, jobName=f"list-{tag}-{i}") for i in range(3)]
    for arn in arns:
        wait_terminal(bedrock, arn)
    page = bedrock.list_model_invocation_jobs(nameContains=tag, maxResults=2, sortOrder="Ascending")
    assert [j["jobArn"] for j in page["invocationJobSummaries"]] == arns[:2]
    rest = bedrock.list_model_invocation_jobs(
        nameContains=tag, maxResults=2, sortOrder="Ascending", nextToken=page["nextToken"]
    )
    assert [j["jobArn"] for j in rest["invocationJobSummaries"]] == arns[2:] and "nextToken" not in rest
    desc = bedrock.list_model_invocation_jobs(nameContains=tag)["invocationJobSummaries"]
    assert [j["jobArn"] for j in desc] == arns[::-1]
    assert all(j["status"] == "Completed" for j in desc)
    assert bedrock.list_model_invocation_jobs(nameContains=tag, statusEquals="Failed")["invocationJobSummaries"] == []
    first = bedrock.get_model_invocation_job(jobIdentifier=arns[0])["submitTime"]
    later = bedrock.list_model_invocation_jobs(nameContains=tag, submitTimeAfter=first)["invocationJobSummaries"]
    assert {j["jobArn"] for j in later} == set(arns)


def test_status_progression(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    stack.configure(time_scale=0.25)
    arn = create_job(bedrock, bucket)
    seen: list[str] = []
    deadline = time.time() + 10
    while time.time() < deadline:
        status = bedrock.get_model_invocation_job(jobIdentifier=arn)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in TERMINAL:
            break
        time.sleep(0.04)
    order = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    assert seen[0] == "Submitted" and seen[-1] == "Completed"
    assert len(seen) >= 3 and seen == sorted(seen, key=order.index)


def test_time_scale_zero_is_terminal_on_first_observation(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    arn = create_job(bedrock, bucket)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Completed" and job["processedRecordCount"] == 100


# ---- outputs -----------------------------------------------------------------------------------


def test_output_layout_and_content(s3: Any, bedrock: Any, bucket: str) -> None:
    recs_a, recs_b = claude_records(150, "a"), claude_records(100, "b")
    put_jsonl(s3, bucket, "in/part-a.jsonl", recs_a)
    put_jsonl(s3, bucket, "in/part-b.jsonl", recs_b)
    s3.put_object(Bucket=bucket, Key="in/README.txt", Body=b"not an input")
    arn = create_job(bedrock, bucket, input_key="in")
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "Completed", job.get("message")
    jid = job_id(arn)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"])
    assert keys == [f"out/{jid}/manifest.json.out", f"out/{jid}/part-a.jsonl.out", f"out/{jid}/part-b.jsonl.out"]
    for name, recs in (("part-a.jsonl", recs_a), ("part-b.jsonl", recs_b)):
        out = read_out(s3, bucket, f"out/{jid}/{name}.out")
        ids = [o["recordId"] for o in out]
        assert sorted(ids) == [r["recordId"] for r in recs] and ids != [r["recordId"] for r in recs]
        by_id = {r["recordId"]: r for r in recs}
        for o in out:
            assert o["modelInput"] == by_id[o["recordId"]]["modelInput"]
            mo = o["modelOutput"]
            assert mo["type"] == "message" and mo["role"] == "assistant" and mo["model"] == CLAUDE
            assert mo["id"].startswith("msg_emulated_") and mo["content"][0]["text"].startswith("[emulated]")
            assert mo["stop_reason"] == "end_turn" and mo["usage"]["input_tokens"] > 0
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"out/{jid}/manifest.json.out")["Body"].read())
    assert manifest["totalRecordCount"] == manifest["processedRecordCount"] == manifest["successRecordCount"] == 250
    assert manifest["errorRecordCount"] == 0 and manifest["inputTokenCount"] > 0 and manifest["outputTokenCount"] > 0
    assert (
        job["totalRecordCount"],
        job["processedRecordCount"],
        job["successRecordCount"],
        job["errorRecordCount"],
    ) == (250, 250, 250, 0)


def test_outputs_are_deterministic_and_record_ids_made_up(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/x.jsonl", [{"modelInput": claude_input(i)} for i in range(100)])
    outs = []
    for _ in range(2):
        arn = create_job(bedrock, bucket, input_key="in/x.jsonl")
        assert wait_terminal(bedrock, arn)["status"] == "Completed"
        outs.append(
            {
                json.dumps(o["modelInput"], sort_keys=True): o
                for o in read_out(s3, bucket, f"out/{job_id(arn)}/x.jsonl.out")
            }
        )
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) == 100
    for key, rec in outs[0].items():
        assert rec["modelOutput"] == outs[1][key]["modelOutput"]
        assert rec["recordId"].startswith("R") and len(rec["recordId"]) == 12 and rec["recordId"][1:].isdigit()


def test_titan_embeddings(s3: Any, bedrock: Any, bucket: str) -> None:
    recs = [
        {"recordId": f"t{i:04d}", "modelInput": {"inputText": f"text {i}", **({"dimensions": 256} if i % 2 else {})}}
        for i in range(100)
    ]
    recs.append({"recordId": "unnorm", "modelInput": {"inputText": "raw", "dimensions": 512, "normalize": False}})
    put_jsonl(s3, bucket, "in/emb.jsonl", recs)
    arn = create_job(bedrock, bucket, model=TITAN)
    assert wait_terminal(bedrock, arn)["status"] == "Completed"
    out = {o["recordId"]: o["modelOutput"] for o in read_out(s3, bucket, f"out/{job_id(arn)}/emb.jsonl.out")}
    assert len(out) == 101
    for i in range(100):
        mo = out[f"t{i:04d}"]
        assert len(mo["embedding"]) == (256 if i % 2 else 1024)
        assert mo["embeddingsByType"]["float"] == mo["embedding"] and mo["inputTextTokenCount"] >= 1
        assert abs(np.linalg.norm(mo["embedding"]) - 1.0) < 1e-5
    assert len(out["unnorm"]["embedding"]) == 512 and abs(np.linalg.norm(out["unnorm"]["embedding"]) - 1.0) > 1e-3


def test_converse_output_shape(s3: Any, bedrock: Any, bucket: str) -> None:
    body = {
        "messages": [{"role": "user", "content": [{"text": "Hi there"}]}],
        "system": [{"text": "Be brief"}],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0.2},
    }
    put_jsonl(
        s3,
        bucket,
        "in/c.jsonl",
        [{"recordId": f"c{i}", "modelInput": body} for i in range(100)]
        + [{"recordId": "bad", "modelInput": {"messages": []}}],
    )
    arn = create_job(bedrock, bucket, model=NOVA, modelInvocationType="Converse")
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "PartiallyCompleted" and job["errorRecordCount"] == 1
    out = {o["recordId"]: o for o in read_out(s3, bucket, f"out/{job_id(arn)}/c.jsonl.out")}
    mo = out["c0"]["modelOutput"]
    assert mo["output"]["message"]["role"] == "assistant" and mo["output"]["message"]["content"][0]["text"].startswith(
        "[emulated]"
    )
    assert mo["stopReason"] == "end_turn" and mo["metrics"] == {"latencyMs": 0}
    assert mo["usage"]["totalTokens"] == mo["usage"]["inputTokens"] + mo["usage"]["outputTokens"]
    assert out["bad"]["error"]["errorCode"] == 400 and "messages" in out["bad"]["error"]["errorMessage"]


def test_per_record_validation_errors(s3: Any, bedrock: Any, bucket: str) -> None:
    recs = claude_records(100)
    recs[3]["modelInput"].pop("anthropic_version")
    recs[7]["modelInput"]["modelId"] = CLAUDE
    recs[9]["modelInput"]["max_tokens"] = "many"
    put_jsonl(s3, bucket, "in/data.jsonl", recs)
    arn = create_job(bedrock, bucket)
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "PartiallyCompleted"
    assert (job["errorRecordCount"], job["successRecordCount"], job["processedRecordCount"]) == (3, 97, 100)
    out = {o["recordId"]: o for o in read_out(s3, bucket, f"out/{job_id(arn)}/data.jsonl.out")}
    assert "modelOutput" not in out["r00003"] and out["r00003"]["error"]["errorCode"] == 400
    assert "anthropic_version" in out["r00003"]["error"]["errorMessage"]
    assert "modelId" in out["r00007"]["error"]["errorMessage"]
    assert "max_tokens" in out["r00009"]["error"]["errorMessage"]


# ---- InvokeModel families: each model takes its own family's body, and only that -------------------

# one documented InvokeModel body per family, and a model of that family
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
ALSO_VALID = {("titan-v2", "titan-v1")}  # V2 takes a bare inputText too (dimensions and normalize are optional)


@pytest.mark.parametrize("family", sorted(FAMILY_BODIES))
def test_a_model_answers_its_family_body_and_refuses_every_other(family: str) -> None:
    model, _ = FAMILY_BODIES[family]
    names = sorted(FAMILY_BODIES)
    results = synthesize_batch(model, "InvokeModel", [FAMILY_BODIES[name][1] for name in names])
    for name, result in zip(names, results):
        if name == family or (family, name) in ALSO_VALID:
            assert result.error is None and json.loads(result.output_json), (family, name, result.error)
        else:
            assert result.output_json is None and result.error.startswith("Malformed input request:"), (family, name)


def test_family_responses_have_the_documented_shape() -> None:
    def answer(family: str, **changes: Any) -> dict:
        model, body = FAMILY_BODIES[family]
        (result,) = synthesize_batch(model, "InvokeModel", [{**body, **changes}])
        assert result.error is None, result.error
        return json.loads(result.output_json)

    nova = answer("nova")
    assert set(nova) == {"output", "stopReason", "usage"}  # no Converse "metrics" on InvokeModel
    assert nova["output"]["message"]["content"][0]["text"].startswith("[emulated]") and nova["stopReason"] == "end_turn"
    assert nova["usage"]["totalTokens"] == nova["usage"]["inputTokens"] + nova["usage"]["outputTokens"] > 0
    llama = answer("llama")
    assert set(llama) == {"generation", "prompt_token_count", "generation_token_count", "stop_reason"}
    assert llama["stop_reason"] == "stop" and llama["prompt_token_count"] > 0
    assert answer("llama", max_gen_len=1)["stop_reason"] == "length"
    (output,) = answer("mistral")["outputs"]
    assert set(output) == {"text", "stop_reason"} and output["text"].startswith("[emulated]")
    (choice,) = answer("mistral-chat", max_tokens=1)["choices"]
    assert choice["message"]["role"] == "assistant" and choice["stop_reason"] == "length"
    floats = answer("cohere", texts=["a", "b"])
    assert floats["response_type"] == "embeddings_floats" and floats["texts"] == ["a", "b"]
    assert [len(v) for v in floats["embeddings"]] == [1024, 1024]
    typed = answer("cohere", texts=["a", "b"], embedding_types=["float", "int8"])
    assert typed["response_type"] == "embeddings_by_type" and set(typed["embeddings"]) == {"float", "int8"}
    as_float, as_int8 = np.array(typed["embeddings"]["float"]), np.array(typed["embeddings"]["int8"])
    assert as_float.shape == as_int8.shape == (2, 1024) and as_int8.min() >= -128 and as_int8.max() <= 127
    assert (np.sign(as_int8) * np.sign(as_float) >= 0).all()  # int8 quantizes the same vectors
    titan_v1 = answer("titan-v1")
    assert set(titan_v1) == {"embedding", "inputTextTokenCount"} and len(titan_v1["embedding"]) == 1536


def test_embedding_models_refuse_converse_bodies_per_record() -> None:
    for family in ("cohere", "titan-v1", "titan-v2"):
        (result,) = synthesize_batch(FAMILY_BODIES[family][0], "Converse", [FAMILY_BODIES["nova"][1]])
        assert result.error is not None and "doesn't support the model" in result.error


def test_a_job_fails_only_the_records_of_another_family(s3: Any, bedrock: Any, bucket: str) -> None:
    model, body = FAMILY_BODIES["llama"]
    records = [{"recordId": f"l{i:03d}", "modelInput": {**body, "prompt": body["prompt"] + str(i)}} for i in range(100)]
    records += [
        {"recordId": "claude", "modelInput": claude_input(0)},
        {"recordId": "nova", "modelInput": FAMILY_BODIES["nova"][1]},
    ]
    put_jsonl(s3, bucket, "in/llama.jsonl", records)
    arn = create_job(bedrock, bucket, model=model)
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "PartiallyCompleted" and (job["successRecordCount"], job["errorRecordCount"]) == (100, 2)
    out = {o["recordId"]: o for o in read_out(s3, bucket, f"out/{job_id(arn)}/llama.jsonl.out")}
    for rid in ("claude", "nova"):
        error = out[rid]["error"]
        assert error["errorCode"] == 400 and "prompt" in error["errorMessage"] and "modelOutput" not in out[rid]
    assert out["l007"]["modelOutput"]["generation"].startswith("[emulated]")


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


# ---- create-time validation, idempotency, conflicts, quotas ---------------------------------


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


# every model id the repo's pipelines, docs, tests and benchmark send to Bedrock batch
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


def test_too_few_records_fails_job(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(5))
    job = wait_terminal(bedrock, create_job(bedrock, bucket))
    assert job["status"] == "Failed" and "minimum" in job["message"] and "100" in job["message"]


def test_min_records_knob(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(min_records=1)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(5))
    assert wait_terminal(bedrock, create_job(bedrock, bucket))["status"] == "Completed"


def test_malformed_line_fails_job(s3: Any, bedrock: Any, bucket: str) -> None:
    body = "\n".join(json.dumps(r) for r in claude_records(100)) + "\n{not json\n"
    s3.put_object(Bucket=bucket, Key="in/data.jsonl", Body=body.encode())
    job = wait_terminal(bedrock, create_job(bedrock, bucket))
    assert job["status"] == "Failed" and "not valid JSON" in job["message"]


def test_idempotent_create_and_name_conflict(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    name, token = uid("idem"), uuid.uuid4().hex
    arn1 = create_job(bedrock, bucket, jobName=name, clientRequestToken=token)
    arn2 = create_job(bedrock, bucket, jobName=name, clientRequestToken=token)
    assert arn1 == arn2
    assert len(bedrock.list_model_invocation_jobs(nameContains=name)["invocationJobSummaries"]) == 1
    with pytest.raises(ClientError) as err:
        create_job(bedrock, bucket, jobName=name, clientRequestToken=uuid.uuid4().hex)
    assert err.value.response["Error"]["Code"] == "ConflictException"


def test_concurrency_quota(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    model = "anthropic.claude-3-opus-20240229-v1:0"
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    stack.configure(time_scale=0.3, concurrency_limits={model: 2})
    try:
        first = create_job(bedrock, bucket, model=model)
        create_job(bedrock, bucket, model=model)
        with pytest.raises(ClientError) as err:
            create_job(bedrock, bucket, model=model)
        assert err.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
        create_job(bedrock, bucket, model=CLAUDE)  # other models are not affected
        assert wait_terminal(bedrock, first)["status"] == "Completed"
        create_job(bedrock, bucket, model=model)
    finally:
        stack.configure(concurrency_limits={model: None})


# ---- fault injection ---------------------------------------------------------------------------


def test_record_error_rate(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(record_error_rate=0.3)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    arn = create_job(bedrock, bucket)
    job = wait_terminal(bedrock, arn)
    out = read_out(s3, bucket, f"out/{job_id(arn)}/data.jsonl.out")
    errors = [o for o in out if "error" in o]
    assert job["status"] == "PartiallyCompleted" and 20 < len(errors) < 120
    assert job["errorRecordCount"] == len(errors) and job["successRecordCount"] == 200 - len(errors)
    assert {e["error"]["errorCode"] for e in errors} <= {429, 500} and len(out) == 200


def test_drop_rate(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(drop_rate=0.25)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    arn = create_job(bedrock, bucket)
    job = wait_terminal(bedrock, arn)
    out = read_out(s3, bucket, f"out/{job_id(arn)}/data.jsonl.out")
    assert job["status"] == "PartiallyCompleted" and 10 < 200 - len(out) < 100
    assert job["totalRecordCount"] == 200 and job["processedRecordCount"] == len(out) == job["successRecordCount"]
    assert len({o["recordId"] for o in out}) == len(out)


def error_ids(s3: Any, bucket: str, arn: str, name: str = "data.jsonl") -> set[str]:
    return {o["recordId"] for o in read_out(s3, bucket, f"out/{job_id(arn)}/{name}.out") if "error" in o}


def test_record_faults_are_drawn_per_job(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(record_error_rate=0.5, min_records=1)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    first, second = uid("draw"), uid("draw")
    arn1 = create_job(bedrock, bucket, jobName=first)
    arn2 = create_job(bedrock, bucket, jobName=second)
    assert wait_terminal(bedrock, arn1)["status"] == wait_terminal(bedrock, arn2)["status"] == "PartiallyCompleted"
    failed1, failed2 = error_ids(s3, bucket, arn1), error_ids(s3, bucket, arn2)
    assert 50 < len(failed1) < 150 and 50 < len(failed2) < 150 and failed1 != failed2
    # a retry job of just the failed records: each gets a fresh draw, so about half succeed now
    retry = [r for r in claude_records(200) if r["recordId"] in failed1]
    put_jsonl(s3, bucket, "retry/data.jsonl", retry)
    arn3 = create_job(bedrock, bucket, input_key="retry/data.jsonl")
    job = wait_terminal(bedrock, arn3)
    assert 0 < job["errorRecordCount"] < len(retry) and job["successRecordCount"] > 0
    # reproducible: the same job name on a fresh emulator draws the same records
    with LocalStack(port=0, time_scale=0, faults=FaultConfig(record_error_rate=0.5, min_records=1)) as other:
        other_bedrock = make_client(other, "bedrock")
        again = create_job(other_bedrock, bucket, jobName=first)
        assert wait_terminal(other_bedrock, again)["status"] == "PartiallyCompleted"
        assert error_ids(s3, bucket, again) == failed1


def test_drop_rate_is_drawn_per_job(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(drop_rate=0.5)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    arns = [create_job(bedrock, bucket) for _ in range(2)]
    assert all(wait_terminal(bedrock, a)["status"] == "PartiallyCompleted" for a in arns)
    kept = [{o["recordId"] for o in read_out(s3, bucket, f"out/{job_id(a)}/data.jsonl.out")} for a in arns]
    assert kept[0] != kept[1] and all(50 < len(k) < 150 for k in kept)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_job_stopped_in_progress_writes_partial_output(stack: LocalStack, s3: Any, bucket: str) -> None:
    clock = FakeClock()
    emulator = BatchJobEmulator(stack.client("s3"), time_scale=10, clock=clock)
    recs_a, recs_b = claude_records(150, "a"), claude_records(101, "b")
    put_jsonl(s3, bucket, "in/part-a.jsonl", recs_a)
    put_jsonl(s3, bucket, "in/part-b.jsonl", recs_b)
    body = {
        "jobName": uid("salvage"),
        "roleArn": ROLE,
        "modelId": CLAUDE,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    }
    arn = emulator.create(body)["jobArn"]
    clock.now += 30  # Submitted -> Validating -> Scheduled -> InProgress
    assert emulator.get(arn)["status"] == "InProgress"
    emulator.stop(arn)
    assert emulator.get(arn)["status"] == "Stopping"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=f"out/{job_id(arn)}/")  # nothing before Stopped
    clock.now += 10
    job = emulator.get(arn)
    assert job["status"] == "Stopped" and job["message"] == "Stop requested by user."
    assert (job["totalRecordCount"], job["processedRecordCount"], job["successRecordCount"]) == (251, 125, 125)
    jid = job_id(arn)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"out/{jid}/manifest.json.out")["Body"].read())
    assert manifest["totalRecordCount"] == 251 and manifest["processedRecordCount"] == 125
    for name, recs in (("part-a.jsonl", recs_a), ("part-b.jsonl", recs_b)):
        out = read_out(s3, bucket, f"out/{jid}/{name}.out")
        ids = [o["recordId"] for o in out]
        assert len(ids) == len(set(ids)) == len(recs) // 2
        assert set(ids) < {r["recordId"] for r in recs} and all("modelOutput" in o for o in out)


def test_job_stopped_before_in_progress_writes_nothing(stack: LocalStack, s3: Any, bucket: str) -> None:
    clock = FakeClock()
    emulator = BatchJobEmulator(stack.client("s3"), time_scale=10, clock=clock)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    body = {
        "jobName": uid("early"),
        "roleArn": ROLE,
        "modelId": CLAUDE,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    }
    arn = emulator.create(body)["jobArn"]
    clock.now += 25  # Scheduled
    assert emulator.get(arn)["status"] == "Scheduled"
    emulator.stop(arn)
    clock.now += 100
    job = emulator.get(arn)
    assert job["status"] == "Stopped" and job["processedRecordCount"] == 0 and job["totalRecordCount"] == 100
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="out/")


def test_oversized_records_get_error_lines(s3: Any, bedrock: Any, bucket: str) -> None:
    titan = [{"recordId": f"t{i:03d}", "modelInput": {"inputText": f"text {i}"}} for i in range(100)]
    titan += [
        {"recordId": "limit", "modelInput": {"inputText": "x" * 50_000}},
        {"recordId": "over", "modelInput": {"inputText": "x" * 50_001}},
    ]
    put_jsonl(s3, bucket, "in/emb.jsonl", titan)
    arn = create_job(bedrock, bucket, model=TITAN)
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "PartiallyCompleted" and job["errorRecordCount"] == 1
    out = {o["recordId"]: o for o in read_out(s3, bucket, f"out/{job_id(arn)}/emb.jsonl.out")}
    assert out["over"]["error"] == {"errorCode": 400, "errorMessage": "Input is too long for requested model."}
    assert len(out["limit"]["modelOutput"]["embedding"]) == 1024
    # Claude 3 Haiku: 200,000-token context, estimated at 4 characters per token
    claude = claude_records(100)
    claude.append(
        {"recordId": "fits", "modelInput": claude_input(0, messages=[{"role": "user", "content": "y" * 800_000}])}
    )
    claude.append(
        {"recordId": "long", "modelInput": claude_input(0, messages=[{"role": "user", "content": "y" * 800_004}])}
    )
    put_jsonl(s3, bucket, "claude/data.jsonl", claude)
    arn = create_job(bedrock, bucket, input_key="claude/data.jsonl")
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "PartiallyCompleted" and job["errorRecordCount"] == 1
    out = {o["recordId"]: o for o in read_out(s3, bucket, f"out/{job_id(arn)}/data.jsonl.out")}
    assert out["long"]["error"]["errorCode"] == 400 and out["long"]["error"]["errorMessage"] == INPUT_TOO_LONG
    assert out["fits"]["modelOutput"]["usage"]["input_tokens"] == 200_000


@pytest.mark.parametrize(
    "model, invocation, body_of, limit_chars",
    [
        (
            "amazon.nova-micro-v1:0",
            "InvokeModel",
            lambda t: {"messages": [{"role": "user", "content": [{"text": t}]}]},
            512_000,
        ),
        ("meta.llama3-1-8b-instruct-v1:0", "InvokeModel", lambda t: {"prompt": t}, 512_000),
        ("mistral.mistral-small-2402-v1:0", "InvokeModel", lambda t: {"prompt": t}, 128_000),
        (
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "Converse",
            lambda t: {"messages": [{"role": "user", "content": [{"text": t}]}], "system": [{"text": "s"}]},
            800_000 - 1,
        ),
        (
            "cohere.embed-english-v3",
            "InvokeModel",
            lambda t: {"texts": ["short", t], "input_type": "search_document"},
            2_048,
        ),
    ],
)
def test_context_window_per_model(model: str, invocation: str, body_of: Any, limit_chars: int) -> None:
    fits, over = synthesize_batch(model, invocation, [body_of("z" * limit_chars), body_of("z" * (limit_chars + 4))])
    assert fits.error is None and fits.output_json
    assert over.error == INPUT_TOO_LONG and over.output_json is None


def test_fail_and_expire_faults(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(fail_jobs_matching="boom", expire_jobs_matching="late")
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    failed = wait_terminal(bedrock, create_job(bedrock, bucket, jobName=uid("boom")))
    assert failed["status"] == "Failed" and failed["message"]
    expired = wait_terminal(bedrock, create_job(bedrock, bucket, jobName=uid("late")))
    assert expired["status"] == "Expired" and expired["processedRecordCount"] == 0
    assert wait_terminal(bedrock, create_job(bedrock, bucket))["status"] == "Completed"


def test_throttling(stack: LocalStack, bedrock: Any) -> None:
    stack.configure(throttle_every=2)
    no_retry = make_client(stack, "bedrock", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    no_retry.list_model_invocation_jobs(maxResults=1)
    with pytest.raises(ClientError) as err:
        no_retry.list_model_invocation_jobs(maxResults=1)
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    for _ in range(3):  # the default client retries throttling transparently
        bedrock.list_model_invocation_jobs(maxResults=1)


# ---- bulk answers: byte for byte the one-by-one answers --------------------------------------------

SCHEMA = OutputSchema.parse({"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}})
# texts that test the bulk shapes: escapes, non-ASCII, a field's closing literal, blank, JSON asked, limits
TRICKY = [
    "plain",
    'a quote " and a backslash \\ and \\\\n',
    "tab\tnew\nline\r form\x0c back\x08",
    "é ✓ 😀 \u2028 \x7f",
    '"}]}],"system":"x',
    '\\"}]}]}',
    '","dimensions":256,"normalize":true}',
    " \n\t",
    "\u3000\xa0",
    "control \x01",
    "y" * 800_004,
    "z" * 50_001,
    "é" * 50_000,
    "Answer." + SCHEMA.instruction(),
]
WORDS = np.array('the quick brown fox é ü \\ " \n 😀 jumps over'.split(" "))
BULK_CASES = [  # model, invocation type, prompt, inference settings, whether the bulk path answers them
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), True),
    (CLAUDE, "InvokeModel", PromptSettings(template="Q: {text}", system='Be "brief" \\ ✓'), InferenceSettings(), True),
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}", system="s"), InferenceSettings(max_tokens=9), True),
    (TITAN, "InvokeModel", PromptSettings(input_column="text"), InferenceSettings(dimensions=256), True),
    (
        TITAN,
        "InvokeModel",
        PromptSettings(input_column="text"),
        InferenceSettings(dimensions=512, normalize=False),
        True,
    ),
    (TITAN, "InvokeModel", PromptSettings(input_column="text"), InferenceSettings(dimensions=1024), True),
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}", structured=SCHEMA), InferenceSettings(), False),
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(temperature=0.5), False),
    (CLAUDE, "Converse", PromptSettings(template="{text}", system="s"), InferenceSettings(), False),
    (NOVA, "InvokeModel", PromptSettings(template="{text}", structured=SCHEMA), InferenceSettings(), False),
    ("meta.llama3-3-70b-instruct-v1:0", "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), False),
    ("mistral.mistral-small-2402-v1:0", "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), False),
    ("mistral.mistral-large-2407-v1:0", "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), False),
    ("cohere.embed-english-v3", "InvokeModel", PromptSettings(input_column="text"), InferenceSettings(), False),
]


def rendered_lines(
    model: str, invocation: str, prompt: PromptSettings, inference: InferenceSettings
) -> tuple[list[bytes], list[bytes]]:
    """(request lines as the pipeline writes them for TRICKY and random texts, hand-written odd records)."""
    rng = np.random.default_rng(7)
    texts = TRICKY + [" ".join(rng.choice(WORDS, rng.integers(1, 30))) for _ in range(300)]
    lines, _ = request_lines(
        pa.table({"text": texts}), derived_record_ids(0, len(texts)), adapter_for(model, invocation, prompt, inference)
    )
    body = claude_input(1)
    odd = [
        json.dumps({"recordId": "spaced", "modelInput": body}),  # json.dumps's default separators
        json.dumps({"modelInput": body}),  # a made-up recordId
        json.dumps({"recordId": "", "modelInput": body}, separators=(",", ":")),
        json.dumps({"recordId": "ïd", "modelInput": body}, separators=(",", ":"), ensure_ascii=False),
        json.dumps({"recordId": "extra", "modelInput": body, "x": 1}, separators=(",", ":")),
        '{"recordId":"u","modelInput":{"inputText":"\\u00e9t\\u00E9","dimensions":256,"normalize":true}}',
        '{"recordId":"slash","modelInput":{"inputText":"a\\/b","dimensions":256,"normalize":true}}',
        json.dumps({"recordId": "v1", "modelInput": {"inputText": "bare"}}, separators=(",", ":")),
        json.dumps({"recordId": "mt", "modelInput": claude_input(1, max_tokens=10**20)}, separators=(",", ":")),
    ]
    return [line.encode() for line in lines.to_pylist() if line is not None], [line.encode() for line in odd]


@pytest.mark.parametrize(
    "faults", [FaultConfig(), FaultConfig(record_error_rate=0.2, drop_rate=0.1)], ids=["", "faults"]
)
@pytest.mark.parametrize("model, invocation, prompt, inference, in_bulk", BULK_CASES)
def test_bulk_answers_are_the_one_by_one_answers(
    model: str,
    invocation: str,
    prompt: PromptSettings,
    inference: InferenceSettings,
    in_bulk: bool,
    faults: FaultConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered, odd = rendered_lines(model, invocation, prompt, inference)
    rows = np.random.default_rng(3).permutation(len(rendered) + len(odd))  # a shuffled chunk
    chunk = [(rendered + odd)[i] for i in rows]
    job = {"modelId": model, "modelInvocationType": invocation, "jobName": "bulk-check"}
    singly: dict[bool, list] = {True: [], False: []}
    runs = {}
    for bulk in (True, False):

        def one_by_one(model_id: str, invocation_type: str, inputs: list, bulk: bool = bulk) -> list:
            singly[bulk].extend(inputs)
            return synthesize_batch(model_id, invocation_type, inputs)

        monkeypatch.setattr(jobs, "synthesize_batch", one_by_one)
        totals: Counter[str] = Counter()
        runs[bulk] = bytes(answer_chunk(job, "in.jsonl", chunk, rows, faults, totals, bulk=bulk)), totals
    assert runs[True] == runs[False]
    if in_bulk:  # the odd records and a few TRICKY ones are answered one by one
        assert len(singly[True]) < 0.1 * len(singly[False])
    else:
        assert singly[True] == singly[False]


def test_bulk_texts_that_need_more_draws_come_from_the_one_by_one_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "_DRAWS", 30)  # too few for most texts
    bodies = [claude_input(i, max_tokens=1 + i % 150) for i in range(300)]
    texts = pa.array([json.dumps(body, separators=(",", ":")) for body in bodies])
    answers = synthesize_bulk(CLAUDE, "InvokeModel", texts)
    results = synthesize_batch(CLAUDE, "InvokeModel", bodies)
    assert answers.rows.tolist() == list(range(300))
    assert answers.outputs.to_pylist() == [r.output_json for r in results]
    assert answers.output_tokens.tolist() == [r.output_tokens for r in results]


def test_vectors_are_written_as_arrow_writes_their_values() -> None:
    rng = np.random.default_rng(11)
    matrices = [round_significant(rng.standard_normal((300, 256)) * scale) for scale in (1e-5, 1 / 32, 0.05, 0.3, 3)]
    matrices.append(round_significant(rng.uniform(-1, 1, (300, 64)) * 10.0 ** rng.integers(-9, 2, (300, 64))))
    matrices.append(
        np.array([[0.0, -0.0, 1.0, 0.1, 1e-6, -9.999999e-7, 0.9999999, 1e-7, 12.5, 5e-324, np.nan, np.inf]])
    )
    mantissas = np.arange(10**6, 10**7, 61, dtype=np.float64)[:147_000]
    matrices += [
        (mantissas / 10.0 ** (6 - exponent)).reshape(-1, 1000) for exponent in range(-7, 1)
    ]  # digits, trailing zeros
    for matrix in matrices:
        values = pc.cast(pa.array(matrix.ravel()), pa.string()).to_pylist()
        rows = [values[i : i + matrix.shape[1]] for i in range(0, len(values), matrix.shape[1])]
        assert format_vectors(matrix) == ["[" + ",".join(row) + "]" for row in rows]


class OneObjectS3:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_object(self, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(self.data)}


def test_input_lines_split_as_splitlines_across_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "READ_BYTES", 3)
    data = b"ab\r\ncd\re\n\n  \nfgh\r\n\r\n\tij\r\n\rk"
    lines = list(BatchJobEmulator(OneObjectS3(data))._iter_lines("b", "k"))
    assert lines == [line for line in data.splitlines() if line.strip()] == [b"ab", b"cd", b"e", b"fgh", b"\tij", b"k"]


def test_validation_names_the_first_bad_line(s3: Any, bedrock: Any, bucket: str) -> None:
    good = [json.dumps(r, separators=(",", ":")) for r in claude_records(3000)]  # bulk-shaped
    body = "\r\n".join(good[:2500] + ["", '{"recordId":"x"}', "{not json"] + good[2500:])
    s3.put_object(Bucket=bucket, Key="in/data.jsonl", Body=body.encode())
    job = wait_terminal(bedrock, create_job(bedrock, bucket))
    assert job["status"] == "Failed" and job["message"].startswith("Line 2501 of ")
    assert job["message"].endswith("is missing the required 'modelInput' field.")


# ---- persistence -------------------------------------------------------------------------------


def test_restart_with_state_dir_keeps_everything(stack: LocalStack, tmp_path: Path) -> None:
    state = tmp_path / "state"
    bucket, table = f"persist-{uuid.uuid4().hex[:8]}", uid("persist")
    with LocalStack(port=0, time_scale=0.2, state_dir=state) as first:
        s3, ddb, bedrock = make_client(first, "s3"), make_client(first, "dynamodb"), make_client(first, "bedrock")
        s3.create_bucket(Bucket=bucket)
        put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
        s3.put_object(
            Bucket=bucket, Key="bin/blob", Body=bytes(range(256)), ContentType="application/x-test", Metadata={"k": "v"}
        )
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(
            TableName=table,
            Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "blob": {"B": b"\x00\x01"}, "tags": {"SS": ["x", "y"]}},
        )
        arn = create_job(bedrock, bucket)
        assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"
    assert (state / "bedrock_jobs.json").exists()
    # moto's backends are process-global, so wipe the data through the other stack to prove the restore.
    s3m, ddbm = make_client(stack, "s3"), make_client(stack, "dynamodb")
    for obj in s3m.list_objects_v2(Bucket=bucket)["Contents"]:
        s3m.delete_object(Bucket=bucket, Key=obj["Key"])
    s3m.delete_bucket(Bucket=bucket)
    ddbm.delete_table(TableName=table)
    with LocalStack(port=0, time_scale=0.2, state_dir=state) as second:
        s3, ddb, bedrock = make_client(second, "s3"), make_client(second, "dynamodb"), make_client(second, "bedrock")
        blob = s3.get_object(Bucket=bucket, Key="bin/blob")
        assert blob["Body"].read() == bytes(range(256)) and blob["Metadata"] == {"k": "v"}
        assert blob["ContentType"] == "application/x-test"
        item = ddb.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]
        assert item["blob"] == {"B": b"\x00\x01"} and sorted(item["tags"]["SS"]) == ["x", "y"]
        job = wait_terminal(bedrock, arn)
        assert job["status"] == "Completed" and job["successRecordCount"] == 100
    with LocalStack(port=0, state_dir=state) as third:
        assert make_client(third, "bedrock").get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"


def test_fault_config_defaults_off() -> None:
    cfg = FaultConfig()
    assert (cfg.record_error_rate, cfg.drop_rate, cfg.throttle_every, cfg.min_records) == (0.0, 0.0, 0, 100)
    assert cfg.fail_jobs_matching is None and cfg.expire_jobs_matching is None
    with pytest.raises(ValueError):
        cfg.update(drop_rate=2)


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
