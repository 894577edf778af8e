"""Meta Llama 3.x and Llama 4 Instruct bodies (InvokeModel).

Source: "Meta Llama models" in the Bedrock user guide
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-meta.html): the body is
``prompt`` (the model's chat template, written by the caller), ``temperature``, ``top_p`` and
``max_gen_len`` (1-2,048; there are no stop sequences); the response is ``generation``,
``prompt_token_count``, ``generation_token_count`` and ``stop_reason`` (``stop`` / ``length``).
The templates are Meta's: Llama 3 turns are ``<|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>``,
Llama 4 turns ``<|header_start|>role<|header_end|>\\n\\n...<|eot|>``.
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
    required_str,
)

LLAMA_MAX_GEN_LEN = 2048
# (turn start, end of the role header, end of turn)
LLAMA3_TURN = ("<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>")
LLAMA4_TURN = ("<|header_start|>", "<|header_end|>\n\n", "<|eot|>")
BEGIN_OF_TEXT = "<|begin_of_text|>"


class LlamaAdapter(PromptStringAdapter):
    family = "meta-llama"
    kind = "text"
    truncated_reasons = frozenset({"length"})  # "length": the generation exceeds max_gen_len and is cut there

    def check_settings(self) -> None:
        super().check_settings()
        if self.inference.stop:
            raise ValueError("inference.stop: Meta Llama models take no stop sequences (InvokeModel has no such field)")
        if self.inference.max_tokens > LLAMA_MAX_GEN_LEN:
            raise ValueError(
                f"inference.max_tokens must be at most {LLAMA_MAX_GEN_LEN} for Meta Llama (max_gen_len), "
                f"got {self.inference.max_tokens}"
            )

    def prompt_frame(self) -> tuple[str, str]:
        start, end, eot = LLAMA4_TURN if model_key(self.model_id).startswith("meta.llama4") else LLAMA3_TURN
        system = f"{start}system{end}{self.prompt.system}{eot}" if self.prompt.system else ""
        return f"{BEGIN_OF_TEXT}{system}{start}user{end}", f"{eot}{start}assistant{end}"

    def body_for_text(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": self.wrap(text), "max_gen_len": self.inference.max_tokens}
        if self.inference.temperature is not None:
            body["temperature"] = self.inference.temperature
        if self.inference.top_p is not None:
            body["top_p"] = self.inference.top_p
        return body

    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        return ParsedOutput(
            text=required_str(model_output.get("generation"), "generation"),
            stop_reason=model_output.get("stop_reason"),
            input_tokens=model_output.get("prompt_token_count"),
            output_tokens=model_output.get("generation_token_count"),
        )

    @property
    def output_type(self) -> pa.StructType:
        return pa.struct(
            [
                ("generation", pa.string()),
                ("prompt_token_count", pa.int64()),
                ("generation_token_count", pa.int64()),
                ("stop_reason", pa.string()),
            ]
        )

    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        return {
            "output_text": pc.struct_field(model_output, "generation"),
            "stop_reason": pc.struct_field(model_output, "stop_reason"),
            "input_tokens": pc.struct_field(model_output, "prompt_token_count"),
            "output_tokens": pc.struct_field(model_output, "generation_token_count"),
        }
