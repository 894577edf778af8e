"""Model adapters: request bodies Bedrock accepts, validation that catches what it would reject."""

from __future__ import annotations

import pytest

from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.models.claude import ANTHROPIC_VERSION

ROW = {"source": "What is 2+2?", "task": "arith"}


def claude(**inference):
    return adapter_for(
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "InvokeModel",
        PromptSettings(template="[{task}] {source}", system="Be brief."),
        InferenceSettings(**inference),
    )


def test_claude_body_and_parse():
    a = claude(max_tokens=64, temperature=0.1, stop=("\n\n",))
    body = a.build(ROW)
    assert body == {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": 64,
        "system": "Be brief.",
        "temperature": 0.1,
        "stop_sequences": ["\n\n"],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "[arith] What is 2+2?"}]}],
    }
    a.validate(body)
    out = a.parse(
        {
            "content": [{"type": "text", "text": "4"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 1},
        }
    )
    assert (out.text, out.stop_reason, out.input_tokens, out.output_tokens) == ("4", "end_turn", 12, 1)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b.pop("anthropic_version"), "anthropic_version"),
        (lambda b: b.update(max_tokens="10"), "max_tokens"),
        (lambda b: b.update(modelId="x"), "modelId"),
        (lambda b: b.update(messages=[]), "messages"),
    ],
)
def test_claude_validation_rejects_what_bedrock_rejects_per_record(mutate, message):
    a = claude()
    body = a.build(ROW)
    mutate(body)
    with pytest.raises(ValueError, match=message):
        a.validate(body)


def test_titan_body_validation_and_parse():
    a = adapter_for(
        "amazon.titan-embed-text-v2:0",
        "InvokeModel",
        PromptSettings(input_column="source"),
        InferenceSettings(dimensions=256),
    )
    assert a.build(ROW) == {"inputText": "What is 2+2?", "dimensions": 256, "normalize": True}
    with pytest.raises(ValueError, match="inputText must be a non-empty string"):
        a.validate(a.build({"source": "  "}))
    out = a.parse({"embedding": [0.5] * 256, "inputTextTokenCount": 7})
    assert len(out.embedding) == 256 and out.input_tokens == 7
    with pytest.raises(ValueError, match="list of 256 floats, got 3"):
        a.parse({"embedding": [1.0, 2.0, 3.0]})


def test_converse_body_validation_and_parse():
    a = adapter_for(
        "us.amazon.nova-lite-v1:0",
        "Converse",
        PromptSettings(template="{source}", system="S"),
        InferenceSettings(max_tokens=32, top_p=0.9),
    )
    body = a.build(ROW)
    assert body == {
        "messages": [{"role": "user", "content": [{"text": "What is 2+2?"}]}],
        "inferenceConfig": {"maxTokens": 32, "topP": 0.9},
        "system": [{"text": "S"}],
    }
    a.validate(body)
    with pytest.raises(ValueError, match="Converse-shaped"):
        a.validate({**body, "anthropic_version": ANTHROPIC_VERSION})
    out = a.parse(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "4"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 5, "outputTokens": 1},
        }
    )
    assert (out.text, out.stop_reason, out.input_tokens, out.output_tokens) == ("4", "end_turn", 5, 1)


def test_adapter_lookup_errors_name_the_model():
    with pytest.raises(ValueError, match="'ai21.jamba-1-5-mini-v1:0' has no InvokeModel adapter"):
        adapter_for("ai21.jamba-1-5-mini-v1:0", "InvokeModel", PromptSettings(template="{a}"), InferenceSettings())
    with pytest.raises(ValueError, match="has no Converse adapter"):
        adapter_for("amazon.titan-embed-text-v2:0", "Converse", PromptSettings(template="{a}"), InferenceSettings())
    profile = adapter_for(
        "eu.anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel", PromptSettings(template="{a}"), InferenceSettings()
    )
    assert profile.family == "anthropic-claude"


def test_template_missing_value_in_row_is_a_row_error():
    import pyarrow as pa

    from bedrock_assets.records import prepare_batch
    from bedrock_assets.sources import SourceBatch, SourceFile

    a = claude()
    batch = pa.RecordBatch.from_pydict({"source": ["ok", None], "task": ["t", "t"]})
    prepared = prepare_batch(SourceBatch(SourceFile("mem.parquet", "parquet", 0), 0, batch), 0, a, None)
    assert prepared.weights.tolist() == [1, 1]  # None renders as empty text but the task still fills the prompt

    t = adapter_for(
        "amazon.titan-embed-text-v2:0", "InvokeModel", PromptSettings(input_column="source"), InferenceSettings()
    )
    prepared = prepare_batch(SourceBatch(SourceFile("mem.parquet", "parquet", 0), 0, batch), 0, t, None)
    assert prepared.weights.tolist() == [1, 0]
    assert "inputText must be a non-empty string" in prepared.table.column("_input_error")[1].as_py()


def test_a_blank_prompt_is_rejected_before_submission_for_every_text_family():
    import pyarrow as pa

    for model, invocation in (
        ("anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel"),
        ("us.amazon.nova-lite-v1:0", "Converse"),
        ("us.amazon.nova-lite-v1:0", "InvokeModel"),
        ("meta.llama3-3-70b-instruct-v1:0", "InvokeModel"),
        ("mistral.mistral-small-2402-v1:0", "InvokeModel"),
        ("mistral.mistral-large-2407-v1:0", "InvokeModel"),
    ):
        adapter = adapter_for(model, invocation, PromptSettings(template="{q}"), InferenceSettings())
        errors = adapter.text_errors(pa.array(["fine", " \n\t ", ""])).to_pylist()
        assert errors[0] is None and errors[1] == errors[2] and "only whitespace" in errors[1]
        with pytest.raises(ValueError, match="blank|non-blank"):
            adapter.validate(adapter.body_for_text("   "))
