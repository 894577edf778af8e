"""Anthropic Claude bodies (InvokeModel): the documented body, and parsing its answer."""

from __future__ import annotations

import pytest

from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.models.claude import ANTHROPIC_VERSION
from bedrock_assets_tests.models.oracles import ROW, build, validate


def claude(**inference):
    return adapter_for(
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "InvokeModel",
        PromptSettings(template="[{task}] {source}", system="Be brief."),
        InferenceSettings(**inference),
    )


def test_claude_body_and_parse():
    a = claude(max_tokens=64, temperature=0.1, stop=("\n\n",))
    body = build(a, ROW)
    assert body == {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": 64,
        "system": "Be brief.",
        "temperature": 0.1,
        "stop_sequences": ["\n\n"],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "[arith] What is 2+2?"}]}],
    }
    validate(a, body)
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
    body = build(a, ROW)
    mutate(body)
    with pytest.raises(ValueError, match=message):
        validate(a, body)
