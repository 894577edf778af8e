"""Amazon Titan Text Embeddings V2 bodies (InvokeModel)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.models.base import ModelAdapter, ParsedOutput, reject_model_id

TITAN_V2_DIMENSIONS = (256, 512, 1024)
TITAN_V2_MAX_CHARS = 50_000


class TitanEmbedV2Adapter(ModelAdapter):
    family = "amazon-titan-embed-v2"
    kind = "embedding"

    def check_settings(self) -> None:
        if not self.prompt.input_column:
            raise ValueError(f"prompt.input_column is required for embedding model {self.model_id!r}")
        if self.prompt.template:
            raise ValueError("prompt.template is not used by embedding models; use prompt.input_column")
        if self.inference.dimensions not in TITAN_V2_DIMENSIONS:
            raise ValueError(
                f"inference.dimensions must be one of {TITAN_V2_DIMENSIONS}, got {self.inference.dimensions}"
            )

    def input_columns(self) -> list[str]:
        return [self.prompt.input_column or ""]

    @property
    def embedding_dimensions(self) -> int:
        return self.inference.dimensions

    def body_for_text(self, text: str) -> dict[str, Any]:
        return {
            "inputText": text,
            "dimensions": self.inference.dimensions,
            "normalize": self.inference.normalize,
        }

    def text_errors(self, texts: pa.Array) -> pa.Array:
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0)
        too_long = pc.greater(pc.utf8_length(texts), TITAN_V2_MAX_CHARS)
        none = pa.scalar(None, pa.string())
        return pc.if_else(
            blank,
            pa.scalar("ValueError: inputText must be a non-empty string"),
            pc.if_else(
                too_long,
                pc.binary_join_element_wise(
                    "ValueError: inputText has ",
                    pc.cast(pc.utf8_length(texts), pa.string()),
                    f" characters; Titan V2 accepts at most {TITAN_V2_MAX_CHARS}",
                    "",
                ),
                none,
            ),
        )

    def validate(self, body: Mapping[str, Any]) -> None:
        reject_model_id(body)
        text = body.get("inputText")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("inputText must be a non-empty string")
        if len(text) > TITAN_V2_MAX_CHARS:
            raise ValueError(f"inputText has {len(text)} characters; Titan V2 accepts at most {TITAN_V2_MAX_CHARS}")
        if body.get("dimensions", 1024) not in TITAN_V2_DIMENSIONS:
            raise ValueError(f"dimensions must be one of {TITAN_V2_DIMENSIONS}")

    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        embedding = model_output.get("embedding")
        if embedding is None:
            embedding = (model_output.get("embeddingsByType") or {}).get("float")
        if not isinstance(embedding, list) or len(embedding) != self.inference.dimensions:
            got = len(embedding) if isinstance(embedding, list) else type(embedding).__name__
            raise ValueError(f"embedding must be a list of {self.inference.dimensions} floats, got {got}")
        return ParsedOutput(embedding=embedding, input_tokens=model_output.get("inputTextTokenCount"), output_tokens=0)

    @property
    def output_type(self) -> pa.StructType:
        return pa.struct([("embedding", pa.list_(pa.float32())), ("inputTextTokenCount", pa.int64())])

    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        dims = self.inference.dimensions
        vectors = pc.struct_field(model_output, "embedding")
        ok = pc.fill_null(pc.equal(pc.list_value_length(vectors), dims), False).to_numpy(zero_copy_only=False)
        values = np.zeros((len(vectors), dims), dtype=np.float32)
        if ok.any():
            kept = vectors.filter(pa.array(ok))
            values[ok] = kept.flatten().to_numpy(zero_copy_only=False).reshape(-1, dims)
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dims, mask=pa.array(~ok))
        tokens = pc.struct_field(model_output, "inputTextTokenCount")
        return {
            "embedding": embedding,
            "stop_reason": pa.nulls(len(vectors), pa.string()),
            "input_tokens": tokens,
            "output_tokens": pc.if_else(pc.is_valid(tokens), 0, pa.scalar(None, pa.int64())),
        }
