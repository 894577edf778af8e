"""Anthropic Claude Messages API bodies (InvokeModel)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.models.base import (
    ParsedOutput,
    TemplatedAdapter,
    first_chosen,
    join_text_blocks,
)
from bedrock_assets.output_schema import TOOL_DESCRIPTION, TOOL_NAME

ANTHROPIC_VERSION = "bedrock-2023-05-31"


class ClaudeMessagesAdapter(TemplatedAdapter):
    family = "anthropic-claude"
    kind = "text"
    native_structured = True  # a forced tool whose input_schema is the output schema

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
        if self.prompt.structured is not None:
            body["tools"] = [
                {
                    "name": TOOL_NAME,
                    "description": TOOL_DESCRIPTION,
                    "input_schema": dict(self.prompt.structured.schema),
                }
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
        if self.prompt.structured is not None:
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
        if self.prompt.structured is not None:
            tool_use = pc.equal(pc.struct_field(blocks, "type"), "tool_use")
            columns["structured"] = first_chosen(content, pc.struct_field(blocks, "input"), tool_use)
        return columns
