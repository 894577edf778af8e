"""Structured outputs: the schema's checks, its columns and types, one answer at a time and vectorized."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bedrock_assets.bedrock.error_classes import ErrorClass, classify
from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.output_lines import OutputParser
from bedrock_assets.output_schema import (
    JSON_INSTRUCTION,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    Mechanism,
    OutputSchema,
    SchemaError,
)
from bedrock_assets_tests.helpers import CLAUDE, CLAUDE_45, pipeline_dict, read_parquet, run
from bedrock_assets_tests.models.oracles import build

NOVA, LLAMA = "us.amazon.nova-lite-v1:0", "us.meta.llama3-3-70b-instruct-v1:0"
LABELS = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["math", "logic", "language", "other"]},
        "difficulty": {"type": "integer"},
        "confident": {"type": "boolean"},
        "keywords": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["category", "difficulty"],
}


def test_the_schema_becomes_typed_columns():
    schema = OutputSchema.parse(LABELS)
    assert schema.struct_type == pa.struct(
        [
            ("category", pa.string()),
            ("difficulty", pa.int64()),
            ("confident", pa.bool_()),
            ("keywords", pa.list_(pa.string())),
        ]
    )


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"type": "array"}, "type object"),
        ({"type": "object", "properties": {"Bad Name": {"type": "string"}}}, "property names"),
        ({"type": "object", "properties": {"x": {"type": "object"}}}, "type must be"),
        ({"type": "object", "properties": {"x": {"type": "integer", "enum": [1]}}}, "enum is supported for strings"),
        ({"type": "object", "properties": {"x": {"type": "string"}}, "required": ["y"]}, "unknown properties"),
        ({"type": "object", "properties": {"error_code": {"type": "string"}}}, "a column the pipeline adds"),
    ],
)
def test_unsupported_schemas_are_refused_naming_the_property(schema, message):
    with pytest.raises(SchemaError, match=message):
        OutputSchema.parse(schema, reserved=frozenset({"error_code"}))


def test_one_answer_is_checked_against_the_schema():
    schema = OutputSchema.parse(LABELS)
    assert schema.check({"category": "math", "difficulty": 3}) is None
    assert "required property 'difficulty'" in schema.check({"category": "math"})
    assert "must be one of" in schema.check({"category": "poetry", "difficulty": 1})
    assert "must be integer" in schema.check({"category": "math", "difficulty": "hard"})
    assert "must be integer" in schema.check({"category": "math", "difficulty": True})  # a bool is no integer
    assert "array of strings" in schema.check({"category": "math", "difficulty": 1, "keywords": [1]})
    assert schema.from_text('```json\n{"category": "logic", "difficulty": 2}\n```') == (
        {"category": "logic", "difficulty": 2},
        None,
    )
    value, problem = schema.from_text("I think it is math, level 3")
    assert value is None and "not JSON" in problem


def test_vectorized_checks_agree_with_the_one_answer_checks():
    schema = OutputSchema.parse(LABELS)
    answers = [
        {"category": "math", "difficulty": 3},
        {"category": "poetry", "difficulty": 1},
        {"category": None, "difficulty": 2},
        None,
    ]
    problems = schema.check_struct(schema.rows_to_struct(answers)).to_pylist()
    assert problems[0] is None and "must be one of" in problems[1] and "required property 'category'" in problems[2]
    assert problems[3] == "the model gave no structured answer"
    ok = pa.array([p is None for p in problems])
    columns = schema.columns(schema.rows_to_struct(answers), ok)
    assert columns["category"].to_pylist() == ["math", None, None, None]
    assert columns["difficulty"].type == pa.int64()


# ---- through the adapters and the output parser -------------------------------------------------


def labels_adapter(model: str = CLAUDE, invocation: str = "InvokeModel"):
    prompt = PromptSettings(template="Label: {source}", structured=OutputSchema.parse(LABELS))
    return adapter_for(model, invocation, prompt, InferenceSettings(max_tokens=64))


def tool_line(rid: str, answer: dict) -> bytes:
    output = {
        "content": [{"type": "tool_use", "id": "t", "name": TOOL_NAME, "input": answer}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    return json.dumps({"recordId": rid, "modelInput": {}, "modelOutput": output}).encode()


WIRE = {**LABELS, "additionalProperties": False}  # the schema as requests carry it


@pytest.mark.parametrize(
    "model, invocation, mechanism",
    [
        (CLAUDE_45, "InvokeModel", Mechanism.OUTPUT_CONFIG),
        (CLAUDE_45, "Converse", Mechanism.TEXT_FORMAT),
        (CLAUDE, "InvokeModel", Mechanism.FORCED_TOOL),
        (CLAUDE, "Converse", Mechanism.PROMPT),
        (NOVA, "InvokeModel", Mechanism.FORCED_TOOL),
        (NOVA, "Converse", Mechanism.PROMPT),
        (LLAMA, "InvokeModel", Mechanism.PROMPT),
        (LLAMA, "Converse", Mechanism.PROMPT),
    ],
)
def test_each_model_is_asked_its_documented_way_and_no_converse_body_carries_tools(model, invocation, mechanism):
    adapter = labels_adapter(model, invocation)
    body = build(adapter, {"source": "2+2"})
    assert adapter.structured_mechanism is mechanism
    assert "toolConfig" not in body or invocation == "InvokeModel"  # Converse-type batch jobs refuse it
    asked_in_prompt = JSON_INSTRUCTION in json.dumps(body)
    assert asked_in_prompt == (mechanism is Mechanism.PROMPT)
    if mechanism is Mechanism.OUTPUT_CONFIG:
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": WIRE}} and "tools" not in body
    if mechanism is Mechanism.TEXT_FORMAT:
        definition = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
        assert body["outputConfig"]["textFormat"]["type"] == "json_schema"
        assert isinstance(definition["schema"], str) and json.loads(definition["schema"]) == WIRE  # a JSON string
    if mechanism is Mechanism.FORCED_TOOL and model == CLAUDE:
        assert body["tools"] == [{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": WIRE}]
        assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    if mechanism is Mechanism.FORCED_TOOL and model == NOVA:
        assert body["toolConfig"]["toolChoice"] == {"tool": {"name": TOOL_NAME}}
        assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": WIRE}


@pytest.mark.parametrize(
    "prop, field",
    [
        ({"type": "integer", "minimum": 1}, "difficulty.minimum: Bedrock structured outputs do not support numerical"),
        ({"type": "number", "multipleOf": 0.5}, "difficulty.multipleOf"),
        ({"type": "string", "maxLength": 10}, "difficulty.maxLength: Bedrock structured outputs do not support string"),
        (
            {"type": "string", "format": "zip-code"},
            "difficulty.format: Bedrock structured outputs support string formats",
        ),
        ({"type": "array", "items": {"type": "string"}, "minItems": 2}, "difficulty.minItems: .* only 0 or 1"),
        ({"$ref": "#/$defs/level"}, r"difficulty.\$ref"),
    ],
)
def test_schema_features_structured_outputs_do_not_support_are_refused_naming_the_field(prop, field):
    schema = {"type": "object", "properties": {"difficulty": prop}}
    with pytest.raises(SchemaError, match=f"output_schema.properties.{field}"):
        OutputSchema.parse(schema)
    with pytest.raises(
        SchemaError, match="output_schema.additionalProperties: Bedrock structured outputs support only false"
    ):
        OutputSchema.parse({**LABELS, "additionalProperties": True})
    assert OutputSchema.parse({**LABELS, "additionalProperties": False}).wire_schema == WIRE
    assert OutputSchema.parse({"type": "object", "properties": {"when": {"type": "string", "format": "date"}}})


def text_line(rid: str, text: str, stop: str = "end_turn", family: str = "claude") -> bytes:
    if family == "claude":
        output = {
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
    else:  # converse
        output = {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop,
            "usage": {"inputTokens": 10, "outputTokens": 5},
        }
    return json.dumps({"recordId": rid, "modelInput": {}, "modelOutput": output}).encode()


@pytest.mark.parametrize("path", ["arrow", "lines"])
@pytest.mark.parametrize("invocation, family", [("InvokeModel", "claude"), ("Converse", "converse")])
def test_a_native_answer_is_the_json_in_its_text_and_one_cut_off_is_final_not_retried(path, invocation, family):
    lines = [
        text_line("a", json.dumps({"category": "math", "difficulty": 3}), family=family),
        text_line("b", '{"category": "logic", "diffic', stop="max_tokens", family=family),  # cut off mid-answer
        text_line("c", json.dumps({"category": "other", "difficulty": 1}), stop="max_tokens", family=family),  # whole
        text_line("d", '{"category": "poetry", "difficulty": 1}', family=family),  # whole, but not the schema
    ]
    parser = OutputParser(labels_adapter(CLAUDE_45, invocation), expected_ids=["a", "b", "c", "d"])
    batch = parser.parse_chunk(b"\n".join(lines)) if path == "arrow" else parser.parse_lines(lines, "test")
    table = pa.Table.from_batches([batch])
    assert table.column("category").to_pylist() == ["math", None, "other", None]
    assert table.column("error_code").to_pylist() == [
        None,
        "TruncatedStructuredOutput",
        None,
        "InvalidStructuredOutput",
    ]
    assert "cut off at the token limit" in table.column("error_message")[1].as_py()
    assert "(stop_reason max_tokens)" in table.column("error_message")[1].as_py()
    assert parser.stats.truncated == 2 and table.column("input_tokens").to_pylist() == [10, 10, 10, 10]
    assert classify("TruncatedStructuredOutput") is ErrorClass.FINAL  # the same body would be cut off again


@pytest.mark.parametrize("path", ["arrow", "lines"])
def test_valid_answers_become_typed_columns_and_invalid_ones_error_rows(path):
    lines = [
        tool_line("a", {"category": "math", "difficulty": 3, "keywords": ["sum"]}),
        tool_line("b", {"category": "poetry", "difficulty": 1}),  # not in the enum
        tool_line("c", {"category": "logic"}),  # required difficulty missing
    ]
    parser = OutputParser(labels_adapter(), expected_ids=["a", "b", "c"])
    batch = parser.parse_chunk(b"\n".join(lines)) if path == "arrow" else parser.parse_lines(lines, "test")
    table = pa.Table.from_batches([batch])
    assert table.schema.field("difficulty").type == pa.int64() and table.schema.field("confident").type == pa.bool_()
    assert table.column("category").to_pylist() == ["math", None, None]
    assert table.column("difficulty").to_pylist() == [3, None, None]
    assert table.column("keywords").to_pylist() == [["sum"], None, None]
    assert table.column("error_code").to_pylist() == [None, "InvalidStructuredOutput", "InvalidStructuredOutput"]
    assert "must be one of" in table.column("error_message")[1].as_py()
    assert "'difficulty' is missing" in table.column("error_message")[2].as_py()
    assert table.column("input_tokens").to_pylist() == [10, 10, 10]  # an invalid answer was still paid for
    assert classify("InvalidStructuredOutput") is ErrorClass.RETRIABLE


def test_a_wrongly_typed_answer_falls_back_to_the_line_path_and_is_an_error_row():
    parser = OutputParser(labels_adapter(), expected_ids=["a", "b"])
    lines = [
        tool_line("a", {"category": "math", "difficulty": 2}),
        tool_line("b", {"category": "math", "difficulty": "x"}),
    ]
    table = pa.Table.from_batches([parser.parse_chunk(b"\n".join(lines))])
    assert parser.stats.fallback_chunks == 1
    assert table.column("error_code").to_pylist() == [None, "InvalidStructuredOutput"]
    assert "must be integer" in table.column("error_message")[1].as_py()


@pytest.mark.parametrize(
    "model, invocation, asked_with",
    [
        (CLAUDE_45, "InvokeModel", "output_config"),
        (CLAUDE_45, "Converse", "outputConfig"),
        (CLAUDE, "InvokeModel", "tool_choice"),
        (CLAUDE, "Converse", JSON_INSTRUCTION),
        (NOVA, "InvokeModel", "toolConfig"),
        (LLAMA, "InvokeModel", JSON_INSTRUCTION),
    ],
)
def test_a_structured_pipeline_gives_typed_columns_on_the_local_stack(
    make_pipelines, instance, s3, bucket, tmp_path, model, invocation, asked_with
):
    attributes = pipeline_dict("labels", bucket, model=model, output_schema=LABELS, inference={"max_tokens": 64})
    attributes["model"] = {"id": model, "invocation_type": invocation}
    defs, (spec,) = make_pipelines([attributes], rows=150)
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.failed) == (150, 0)
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert set(merged.column("category").to_pylist()) <= {"math", "logic", "language", "other"}
    assert merged.schema.field("difficulty").type == pa.int64()
    assert all(1 <= d <= 5 for d in merged.column("difficulty").to_pylist())
    sent = s3.get_object(Bucket=bucket, Key="out/labels/shards/s00000/input.jsonl")["Body"].read().decode()
    assert asked_with in sent and (invocation == "InvokeModel" or "toolConfig" not in sent)


def test_answers_arrow_cannot_hold_are_invalid_rows_not_a_crash():
    schema = OutputSchema.parse(LABELS)
    assert "64-bit integer range" in schema.check({"category": "math", "difficulty": 10**20})
    parser = OutputParser(labels_adapter(), expected_ids=["a", "b"])
    lines = [
        tool_line("a", {"category": "math", "difficulty": 10**20}),
        tool_line("b", {"category": "math", "difficulty": 1, "keywords": ["k", None]}),
    ]
    table = pa.Table.from_batches([parser.parse_chunk(b"\n".join(lines))])
    assert table.column("error_code").to_pylist() == ["InvalidStructuredOutput"] * 2
    # the same answers through the Arrow path, one at a time: the same verdicts
    arrow = OutputParser(labels_adapter(), expected_ids=["b"]).parse_chunk(lines[1])
    assert arrow.column("error_code").to_pylist() == ["InvalidStructuredOutput"]
