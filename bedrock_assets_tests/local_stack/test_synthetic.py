"""Synthetic answers record by record: deterministic, in each family's documented response shape, within size limits."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from bedrock_assets.local_stack.synthetic import (
    INPUT_TOO_LONG,
    synthesize_batch,
)
from bedrock_assets_tests.local_stack.helpers import (
    FAMILY_BODIES,
    NOVA,
    TITAN,
    claude_input,
    claude_records,
    create_job,
    job_id,
    put_jsonl,
    read_out,
    wait_terminal,
)


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
