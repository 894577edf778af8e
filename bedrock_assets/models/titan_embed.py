"""Amazon Titan Text Embeddings bodies (InvokeModel): V2 and V1 (G1 - Text).

Source: "Amazon Titan Embeddings G1 - Text" in the Bedrock user guide
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html):
V2 takes ``inputText``, ``dimensions`` (1024, 512, 256), ``normalize``; V1 takes ``inputText`` only
and returns 1,536 values. Both answer ``{"embedding": [...], "inputTextTokenCount": n}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.models.base import EmbeddingAdapter

TITAN_V2_DIMENSIONS = (256, 512, 1024)
TITAN_V2_MAX_CHARS = 50_000
TITAN_V1_DIMENSIONS = 1536


class _TitanEmbedAdapter(EmbeddingAdapter):
    """The Titan text embedding response: ``embedding`` and ``inputTextTokenCount``."""

    text_field = "inputText"

    def vector_of(self, model_output: Mapping[str, Any]) -> Any:
        embedding = model_output.get("embedding")
        if embedding is None:
            embedding = (model_output.get("embeddingsByType") or {}).get("float")
        return embedding

    def input_tokens_of(self, model_output: Mapping[str, Any]) -> int | None:
        return model_output.get("inputTextTokenCount")

    @property
    def output_type(self) -> pa.StructType:
        return pa.struct([("embedding", pa.list_(pa.float32())), ("inputTextTokenCount", pa.int64())])

    def vectors_arrow(self, model_output: pa.StructArray) -> pa.Array:
        return pc.struct_field(model_output, "embedding")

    def input_tokens_arrow(self, model_output: pa.StructArray) -> pa.Array:
        return pc.struct_field(model_output, "inputTextTokenCount")


class TitanEmbedV2Adapter(_TitanEmbedAdapter):
    family = "amazon-titan-embed-v2"
    max_chars = TITAN_V2_MAX_CHARS

    def check_settings(self) -> None:
        super().check_settings()
        if self.inference.dimensions not in TITAN_V2_DIMENSIONS:
            raise ValueError(
                f"inference.dimensions must be one of {TITAN_V2_DIMENSIONS}, got {self.inference.dimensions}"
            )

    def body_for_text(self, text: str) -> dict[str, Any]:
        return {
            "inputText": text,
            "dimensions": self.inference.dimensions,
            "normalize": self.inference.normalize,
        }


class TitanEmbedV1Adapter(_TitanEmbedAdapter):
    """Titan Text Embeddings V1: no inference parameters; 1,536-d vectors."""

    family = "amazon-titan-embed-v1"
    fixed_dimensions = TITAN_V1_DIMENSIONS

    def body_for_text(self, text: str) -> dict[str, Any]:
        return {"inputText": text}
