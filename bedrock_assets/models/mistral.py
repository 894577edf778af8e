"""Mistral AI bodies (InvokeModel): text completion and chat completion.

Sources (Bedrock user guide):
- "Mistral AI text completion" (model-parameters-mistral-text-completion.html), for Mistral 7B
  Instruct, Mixtral 8x7B Instruct, Mistral Large (24.02) and Mistral Small (24.02): ``prompt``
  (``<s>[INST] ... [/INST]``), ``max_tokens``, ``stop`` (at most 10), ``temperature``, ``top_p``,
  ``top_k``; the response is ``outputs[0].text`` and ``outputs[0].stop_reason``.
- "Mistral AI chat completion" (model-parameters-mistral-chat-completion.html), for Mistral Large 2
  (24.07): ``messages`` (``role``, ``content`` string), ``max_tokens``, ``temperature``, ``top_p``,
  ``tools``, ``tool_choice``; the response is ``choices[0].message.content`` and
  ``choices[0].stop_reason``.
Neither response carries token counts (the job manifest has the totals), so they stay null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.bedrock.model_ids import model_key
from bedrock_assets.models.base import (
    ParsedOutput,
    PromptStringAdapter,
    TemplatedAdapter,
    required_str,
    single_item,
    single_items,
)

# max_tokens ceiling per text-completion model (base id prefix), from the text completion page
MISTRAL_COMPLETION_MAX_TOKENS = {
    "mistral.mistral-7b-instruct": 8192,
    "mistral.mixtral-8x7b-instruct": 4096,
    "mistral.mistral-large-2402": 8192,
    "mistral.mistral-small-2402": 8192,
}
MISTRAL_CHAT_MODELS = ("mistral.mistral-large-2407",)
MISTRAL_MAX_STOP = 10
# the stop reason of an answer cut off at max_tokens (the AWS pages show only the requests; "length" as
# the local stack and Mistral's own API answer it, unverified against the live service)
TRUNCATED = frozenset({"length"})


def _sampling(adapter: TemplatedAdapter) -> dict[str, Any]:
    """``max_tokens``, then ``temperature`` / ``top_p`` when set: the fields both Mistral APIs share."""
    body: dict[str, Any] = {"max_tokens": adapter.inference.max_tokens}
    if adapter.inference.temperature is not None:
        body["temperature"] = adapter.inference.temperature
    if adapter.inference.top_p is not None:
        body["top_p"] = adapter.inference.top_p
    return body


def _no_token_counts(model_output: pa.StructArray) -> dict[str, pa.Array]:
    return {
        "input_tokens": pa.nulls(len(model_output), pa.int64()),
        "output_tokens": pa.nulls(len(model_output), pa.int64()),
    }


class MistralCompletionAdapter(PromptStringAdapter):
    """Text completion: the row's text (after the system prompt, if any) inside ``<s>[INST] ... [/INST]``."""

    family = "mistral-completion"
    kind = "text"
    truncated_reasons = TRUNCATED

    def check_settings(self) -> None:
        super().check_settings()
        base = model_key(self.model_id)
        limit = next((v for k, v in MISTRAL_COMPLETION_MAX_TOKENS.items() if base.startswith(k)), None)
        if limit is not None and self.inference.max_tokens > limit:
            raise ValueError(
                f"inference.max_tokens must be at most {limit} for {base}, got {self.inference.max_tokens}"
            )
        if len(self.inference.stop) > MISTRAL_MAX_STOP:
            raise ValueError(f"inference.stop: Mistral takes at most {MISTRAL_MAX_STOP} stop sequences")

    def prompt_frame(self) -> tuple[str, str]:
        system = f"{self.prompt.system}\n\n" if self.prompt.system else ""
        return f"<s>[INST] {system}", " [/INST]"

    def body_for_text(self, text: str) -> dict[str, Any]:
        body = {"prompt": self.wrap(text), **_sampling(self)}
        if self.inference.stop:
            body["stop"] = list(self.inference.stop)
        return body

    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        output = single_item(model_output, "outputs")
        return ParsedOutput(
            text=required_str(output.get("text"), "outputs[0].text"), stop_reason=output.get("stop_reason")
        )

    @property
    def output_type(self) -> pa.StructType:
        return pa.struct([("outputs", pa.list_(pa.struct([("text", pa.string()), ("stop_reason", pa.string())])))])

    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        output = single_items(pc.struct_field(model_output, "outputs"))
        return {
            "output_text": pc.struct_field(output, "text"),
            "stop_reason": pc.struct_field(output, "stop_reason"),
            **_no_token_counts(model_output),
        }


class MistralChatAdapter(TemplatedAdapter):
    """Chat completion: an optional system message, then the row's text as the user message."""

    family = "mistral-chat"
    kind = "text"
    truncated_reasons = TRUNCATED

    def check_settings(self) -> None:
        super().check_settings()
        if self.inference.stop:
            raise ValueError("inference.stop: the Mistral chat completion API takes no stop sequences")

    def body_for_text(self, text: str) -> dict[str, Any]:
        system = [{"role": "system", "content": self.prompt.system}] if self.prompt.system else []
        return {"messages": [*system, {"role": "user", "content": text}], **_sampling(self)}

    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        choice = single_item(model_output, "choices")
        content = (choice.get("message") or {}).get("content")
        return ParsedOutput(
            text=required_str(content, "choices[0].message.content"), stop_reason=choice.get("stop_reason")
        )

    @property
    def output_type(self) -> pa.StructType:
        message = pa.struct([("content", pa.string())])
        return pa.struct([("choices", pa.list_(pa.struct([("message", message), ("stop_reason", pa.string())])))])

    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        choice = single_items(pc.struct_field(model_output, "choices"))
        return {
            "output_text": pc.struct_field(choice, ["message", "content"]),
            "stop_reason": pc.struct_field(choice, "stop_reason"),
            **_no_token_counts(model_output),
        }
