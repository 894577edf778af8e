"""Cohere Embed v3 bodies (InvokeModel): English and Multilingual, 1,024-d float vectors.

Source: "Cohere Embed v3" in the Bedrock user guide
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v3.html): the body is
``texts`` (0-96 texts of at most 2,048 characters), ``input_type`` (required: ``search_document``,
``search_query``, ``classification``, ``clustering``), ``truncate`` (``NONE`` (default), ``START``,
``END``) and ``embedding_types``; the response is ``embeddings`` (a list of vectors, or with
``embedding_types`` a map such as ``{"float": [[...]]}``), ``id``, ``response_type`` and ``texts``,
without token counts. One text per record; ``embedding_types: ["float"]`` is always sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.models.base import EmbeddingAdapter, single_items

COHERE_MODELS = ("cohere.embed-english-v3", "cohere.embed-multilingual-v3")
COHERE_DIMENSIONS = 1024
COHERE_MAX_CHARS = 2048
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
COHERE_TRUNCATE = ("NONE", "START", "END")
EMBEDDING_TYPES = ["float"]


class CohereEmbedAdapter(EmbeddingAdapter):
    family = "cohere-embed-v3"
    text_field = "texts[0]"
    max_chars = COHERE_MAX_CHARS
    fixed_dimensions = COHERE_DIMENSIONS

    def check_settings(self) -> None:
        super().check_settings()
        if self.inference.input_type not in COHERE_INPUT_TYPES:
            raise ValueError(
                f"inference.input_type must be one of {COHERE_INPUT_TYPES}, got {self.inference.input_type!r}"
            )
        if self.inference.truncate not in COHERE_TRUNCATE:
            raise ValueError(f"inference.truncate must be one of {COHERE_TRUNCATE}, got {self.inference.truncate!r}")

    def body_for_text(self, text: str) -> dict[str, Any]:
        return {
            "texts": [text],
            "input_type": self.inference.input_type,
            "truncate": self.inference.truncate,
            "embedding_types": EMBEDDING_TYPES,
        }

    def vector_of(self, model_output: Mapping[str, Any]) -> Any:
        embeddings = model_output.get("embeddings")
        if isinstance(embeddings, dict):  # the embeddings_by_type response
            embeddings = embeddings.get("float")
        if not isinstance(embeddings, list) or len(embeddings) != 1:
            raise ValueError("embeddings must hold exactly one vector (one text per record)")
        return embeddings[0]

    @property
    def output_type(self) -> pa.StructType:
        # the shape of the answer to embedding_types ["float"]; an ``embeddings_floats`` answer (a bare
        # list) is not this shape, so its chunk is parsed line by line with ``parse``
        vectors = pa.list_(pa.list_(pa.float32()))
        return pa.struct([("embeddings", pa.struct([("float", vectors)]))])

    def vectors_arrow(self, model_output: pa.StructArray) -> pa.Array:
        return single_items(pc.struct_field(model_output, ["embeddings", "float"]))
