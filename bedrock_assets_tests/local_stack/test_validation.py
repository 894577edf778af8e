"""Per-record validation: each model takes its own family's body, and only that, as Bedrock does at run time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bedrock_assets.local_stack.synthetic import (
    synthesize_batch,
)
from bedrock_assets_tests.local_stack.helpers import (
    CLAUDE,
    FAMILY_BODIES,
    claude_input,
    claude_records,
    create_job,
    job_id,
    put_jsonl,
    read_out,
    wait_terminal,
)


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
