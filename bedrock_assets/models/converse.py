"""Converse-shaped bodies for jobs created with ``modelInvocationType="Converse"``.

Source: the Converse API reference (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html):
``messages``, ``system``, ``inferenceConfig`` (``maxTokens``, ``temperature``, ``topP``, ``stopSequences``),
``outputConfig``; ``stopReason`` includes ``max_tokens`` and ``model_context_window_exceeded`` when the
answer is cut off. A Converse-type batch job takes no ``toolConfig`` ("Batch inference doesn't support tool
calling for jobs that use the Converse invocation type. Records that include toolConfig fail with a 400
error", https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference.html): a structured answer is
asked for with ``outputConfig.textFormat`` where the model supports it, else by the prompt.
"""

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
from bedrock_assets.models.claude import supports_structured_outputs
from bedrock_assets.output_schema import TOOL_DESCRIPTION, TOOL_NAME, Mechanism

TRUNCATED = frozenset({"max_tokens", "model_context_window_exceeded"})


class ConverseAdapter(TemplatedAdapter):
    family = "converse"
    kind = "text"
    invocation_type = "Converse"
    truncated_reasons = TRUNCATED

    @property
    def structured_mechanism(self) -> Mechanism:
        return Mechanism.TEXT_FORMAT if supports_structured_outputs(self.model_id) else Mechanism.PROMPT

    def body_for_text(self, text: str) -> dict[str, Any]:
        config: dict[str, Any] = {"maxTokens": self.inference.max_tokens}
        if self.inference.temperature is not None:
            config["temperature"] = self.inference.temperature
        if self.inference.top_p is not None:
            config["topP"] = self.inference.top_p
        if self.inference.stop:
            config["stopSequences"] = list(self.inference.stop)
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": config,
        }
        if self.prompt.system:
            body["system"] = [{"text": self.prompt.system}]
        structured, mechanism = self.prompt.structured, self.structured_mechanism
        if structured is not None and mechanism is Mechanism.TEXT_FORMAT:
            body["outputConfig"] = structured.text_format()
        elif structured is not None and mechanism is Mechanism.FORCED_TOOL:  # Nova's InvokeModel body
            spec = {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "inputSchema": {"json": structured.wire_schema}}
            body["toolConfig"] = {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": TOOL_NAME}}}
        return body

    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        content = model_output["output"]["message"]["content"]
        text = "".join(block.get("text") or "" for block in content)
        usage = model_output.get("usage") or {}
        tool = next((b["toolUse"] for b in content if b.get("toolUse")), None)
        return ParsedOutput(
            text=text,
            stop_reason=model_output.get("stopReason"),
            input_tokens=usage.get("inputTokens"),
            output_tokens=usage.get("outputTokens"),
            structured=tool.get("input") if tool else None,
        )

    @property
    def output_type(self) -> pa.StructType:
        block = [("text", pa.string())]
        if self.prompt.structured is not None and self.structured_mechanism is Mechanism.FORCED_TOOL:
            block.append(("toolUse", pa.struct([("input", self.prompt.structured.struct_type)])))
        content = pa.list_(pa.struct(block))
        return pa.struct(
            [
                ("output", pa.struct([("message", pa.struct([("content", content)]))])),
                ("stopReason", pa.string()),
                ("usage", pa.struct([("inputTokens", pa.int64()), ("outputTokens", pa.int64())])),
            ]
        )

    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        message = pc.struct_field(pc.struct_field(model_output, "output"), "message")
        content = pc.struct_field(message, "content")
        text = join_text_blocks(content, pc.struct_field(content.flatten(), "text"))
        usage = pc.struct_field(model_output, "usage")
        columns = {
            "output_text": pc.if_else(pc.is_valid(content), text, pa.scalar(None, pa.string())),
            "stop_reason": pc.struct_field(model_output, "stopReason"),
            "input_tokens": pc.struct_field(usage, "inputTokens"),
            "output_tokens": pc.struct_field(usage, "outputTokens"),
        }
        if self.prompt.structured is not None and self.structured_mechanism is Mechanism.FORCED_TOOL:
            tool_use = pc.struct_field(content.flatten(), "toolUse")
            columns["structured"] = first_chosen(content, pc.struct_field(tool_use, "input"), pc.is_valid(tool_use))
        return columns
