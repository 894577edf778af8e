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


# ---- structured outputs and tools, as the current pages say ----------------------------------------

HAIKU_45 = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # takes a JSON schema output format
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["a", "b"]}, "score": {"type": "integer"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
CONVERSE = {"messages": [{"role": "user", "content": [{"text": "Label it."}]}], "inferenceConfig": {"maxTokens": 64}}
TOOLS = {
    "tools": [{"toolSpec": {"name": "record", "inputSchema": {"json": SCHEMA}}}],
    "toolChoice": {"tool": {"name": "record"}},
}


def text_format(schema: Any = SCHEMA, **changes: Any) -> dict:
    definition = {"schema": json.dumps(schema) if not isinstance(schema, str) else schema, "name": "record"}
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}, **changes}}


def answer(model: str, invocation: str, body: dict, batch: bool = True) -> tuple[Any, str | None]:
    (result,) = synthesize_batch(model, invocation, [body], batch=batch)
    return (json.loads(result.output_json) if result.output_json else None), result.error


def test_a_converse_batch_record_with_tools_fails_and_the_runtime_takes_the_same_tools():
    output, error = answer(HAIKU_45, "Converse", {**CONVERSE, "toolConfig": TOOLS})
    assert output is None and "batch inference doesn't support tool calling" in error
    output, error = answer(HAIKU_45, "Converse", {**CONVERSE, "toolConfig": TOOLS}, batch=False)
    assert error is None and output["stopReason"] == "tool_use"


@pytest.mark.parametrize("invocation", ["Converse", "InvokeModel"])
def test_the_json_schema_output_format_is_answered_in_the_text_with_an_answer_that_honours_it(invocation):
    if invocation == "Converse":
        output, error = answer(HAIKU_45, invocation, {**CONVERSE, "outputConfig": text_format()})
        text = output["output"]["message"]["content"][0]["text"]
    else:
        body = claude_input(1, output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
        output, error = answer(HAIKU_45, invocation, body)
        (block,) = output["content"]
        assert block["type"] == "text"
        text = block["text"]
    assert error is None
    value = json.loads(text)
    assert value["label"] in ("a", "b") and isinstance(value["score"], int)


@pytest.mark.parametrize(
    "config, message",
    [
        (text_format(schema="{not json"), "schema: not valid JSON"),
        (text_format(schema=SCHEMA | {"type": "array"}), "must be a JSON schema of type object"),
        (
            {"textFormat": {"type": "json", "structure": text_format()["textFormat"]["structure"]}},
            "type: must be 'json_schema'",
        ),
        (
            {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": SCHEMA}}}},
            "schema: required string",
        ),
        (text_format({**SCHEMA, "additionalProperties": True}), "additionalProperties: only false"),
        (
            text_format({**SCHEMA, "properties": {"score": {"type": "integer", "minimum": 1}}}),
            "score.minimum: numerical",
        ),
        (
            text_format({**SCHEMA, "properties": {"label": {"type": "string", "maxLength": 3}}}),
            "label.maxLength: string",
        ),
        (text_format({**SCHEMA, "properties": {"x": {"$ref": "https://example.com/s.json"}}}), "external references"),
        (text_format({**SCHEMA, "properties": {"x": {"$ref": "#"}}}), "recursive schemas"),
        (text_format({**SCHEMA, "properties": {"x": {"type": "array", "minItems": 3}}}), "minItems: only 0 and 1"),
    ],
)
def test_output_config_shapes_and_schema_features_the_service_refuses_are_refused(config, message):
    output, error = answer(HAIKU_45, "Converse", {**CONVERSE, "outputConfig": config})
    assert output is None and message in error


def test_a_model_without_structured_outputs_refuses_the_output_format_and_claude_refuses_unknown_keys():
    _, error = answer(CLAUDE, "Converse", {**CONVERSE, "outputConfig": text_format()})
    assert "does not support structured outputs" in error
    body = claude_input(1, output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    _, error = answer(CLAUDE, "InvokeModel", body)
    assert "output_config.format: this model does not support structured outputs" in error
    _, error = answer(HAIKU_45, "InvokeModel", claude_input(1, response_format={"type": "json_schema"}))
    assert "extraneous key(s) ['response_format'] are not permitted" in error


def test_a_json_answer_longer_than_max_tokens_is_cut_off_with_its_families_stop_reason():
    body = {**CONVERSE, "inferenceConfig": {"maxTokens": 3}, "outputConfig": text_format()}
    output, error = answer(HAIKU_45, "Converse", body)
    text = output["output"]["message"]["content"][0]["text"]
    assert output["stopReason"] == "max_tokens" and len(text) == 12
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
