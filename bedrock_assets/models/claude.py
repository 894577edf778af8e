"""Anthropic Claude Messages API bodies (InvokeModel).

Source: "Anthropic Claude Messages API" in the Bedrock user guide
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html):
``anthropic_version``, ``max_tokens``, ``messages``, ``system``, ``temperature``, ``top_p``,
``stop_sequences``, ``tools``, ``tool_choice``; ``stop_reason`` is ``end_turn``, ``max_tokens``,
``stop_sequence``, ``tool_use``, ``refusal`` or ``model_context_window_exceeded``. Structured outputs
("Structured outputs for Anthropic Claude models",
https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-structured-outputs.html): Claude
Sonnet 4.5, Haiku 4.5, Opus 4.5 and Opus 4.6 take ``output_config.format`` (the deprecated
``output_format`` is not sent); older Claude models are asked with a forced tool, which InvokeModel-type
batch jobs allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.bedrock.model_ids import model_key
from bedrock_assets.models.base import (
    ParsedOutput,
    TemplatedAdapter,
    first_chosen,
    join_text_blocks,
)
from bedrock_assets.output_schema import TOOL_DESCRIPTION, TOOL_NAME, Mechanism

ANTHROPIC_VERSION = "bedrock-2023-05-31"
# the Claude models with structured outputs (base id prefixes), from the page above
STRUCTURED_OUTPUT_MODELS = (
    "anthropic.claude-sonnet-4-5",
    "anthropic.claude-haiku-4-5",
    "anthropic.claude-opus-4-5",
    "anthropic.claude-opus-4-6",
)
TRUNCATED = frozenset({"max_tokens", "model_context_window_exceeded"})


def supports_structured_outputs(model_id: str) -> bool:
    return model_key(model_id).startswith(STRUCTURED_OUTPUT_MODELS)


class ClaudeMessagesAdapter(TemplatedAdapter):
    family = "anthropic-claude"
    kind = "text"
    truncated_reasons = TRUNCATED

    @property
    def structured_mechanism(self) -> Mechanism:
        return Mechanism.OUTPUT_CONFIG if supports_structured_outputs(self.model_id) else Mechanism.FORCED_TOOL

    def body_for_text(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": self.inference.max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        }
        if self.prompt.system:
            body["system"] = self.prompt.system
        if self.inference.temperature is not None:
            body["temperature"] = self.inference.temperature
        if self.inference.top_p is not None:
            body["top_p"] = self.inference.top_p
        if self.inference.stop:
            body["stop_sequences"] = list(self.inference.stop)
        structured = self.prompt.structured
        if structured is not None and self.structured_mechanism is Mechanism.OUTPUT_CONFIG:
            body["output_config"] = structured.output_config()
        elif structured is not None:
            body["tools"] = [
                {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": structured.wire_schema}
            ]
            body["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return body

    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        text = "".join(block.get("text") or "" for block in model_output["content"] if block.get("type") == "text")
        usage = model_output.get("usage") or {}
        tool = next((b for b in model_output["content"] if b.get("type") == "tool_use"), None)
        return ParsedOutput(
            text=text,
            stop_reason=model_output.get("stop_reason"),
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            structured=tool.get("input") if tool else None,
        )

    @property
    def output_type(self) -> pa.StructType:
        block = [("type", pa.string()), ("text", pa.string())]
        if self.prompt.structured is not None and self.structured_mechanism is Mechanism.FORCED_TOOL:
            block.append(("input", self.prompt.structured.struct_type))
        return pa.struct(
            [
                ("content", pa.list_(pa.struct(block))),
                ("stop_reason", pa.string()),
                ("usage", pa.struct([("input_tokens", pa.int64()), ("output_tokens", pa.int64())])),
            ]
        )

    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        content = pc.struct_field(model_output, "content")
        blocks = content.flatten()
        text = join_text_blocks(
            content, pc.struct_field(blocks, "text"), pc.equal(pc.struct_field(blocks, "type"), "text")
        )
        usage = pc.struct_field(model_output, "usage")
        columns = {
            "output_text": text,
            "stop_reason": pc.struct_field(model_output, "stop_reason"),
            "input_tokens": pc.struct_field(usage, "input_tokens"),
            "output_tokens": pc.struct_field(usage, "output_tokens"),
        }
        if self.prompt.structured is not None and self.structured_mechanism is Mechanism.FORCED_TOOL:
            tool_use = pc.equal(pc.struct_field(blocks, "type"), "tool_use")
            columns["structured"] = first_chosen(content, pc.struct_field(blocks, "input"), tool_use)
        return columns
