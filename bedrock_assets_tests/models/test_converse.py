"""Converse-shaped bodies and answers."""

from __future__ import annotations

import pytest

from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.models.claude import ANTHROPIC_VERSION
from bedrock_assets_tests.models.oracles import ROW, build, validate


def test_converse_body_validation_and_parse():
    a = adapter_for(
        "us.amazon.nova-lite-v1:0",
        "Converse",
        PromptSettings(template="{source}", system="S"),
        InferenceSettings(max_tokens=32, top_p=0.9),
    )
    body = build(a, ROW)
    assert body == {
        "messages": [{"role": "user", "content": [{"text": "What is 2+2?"}]}],
        "inferenceConfig": {"maxTokens": 32, "topP": 0.9},
        "system": [{"text": "S"}],
    }
    validate(a, body)
    with pytest.raises(ValueError, match="Converse-shaped"):
        validate(a, {**body, "anthropic_version": ANTHROPIC_VERSION})
    out = a.parse(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "4"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 5, "outputTokens": 1},
        }
    )
    assert (out.text, out.stop_reason, out.input_tokens, out.output_tokens) == ("4", "end_turn", 5, 1)
