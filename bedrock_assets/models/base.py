"""The model-adapter contract: build ``modelInput``, say which rows it cannot take, parse ``modelOutput``."""

from __future__ import annotations

import json
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.output_schema import Mechanism, OutputSchema

OutputKind = Literal["text", "embedding"]


@dataclass(frozen=True)
class PromptSettings:
    """How a row becomes a request: a template over columns (text) or one column (embeddings)."""

    template: str | None = None
    system: str | None = None
    input_column: str | None = None
    structured: OutputSchema | None = None  # the JSON schema every answer must match (text models)


@dataclass(frozen=True)
class InferenceSettings:
    max_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    dimensions: int = 1024
    normalize: bool = True
    input_type: str = "search_document"
    truncate: str = "NONE"


@dataclass
class ParsedOutput:
    """One record's model output, normalized across families."""

    text: str | None = None
    embedding: list[float] | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    structured: Any = None  # the answer the model gave as a tool call (native structured output)


def template_fields(template: str) -> list[str]:
    """Column names referenced by a ``{column}`` template; rejects ``{a.b}``, ``{a[0]}``, ``{}``."""
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or not _is_plain_column(name):
            raise ValueError(f"template field {{{name}}} must name a column, like {{source}}")
        if spec or conversion:
            raise ValueError(f"template field {{{name}}} may not use format specs or conversions")
        if name not in names:
            names.append(name)
    return names


def _is_plain_column(name: str) -> bool:
    return not name.isdigit() and not any(c in name for c in ".[]")


@dataclass
class ModelAdapter(ABC):
    """A model family: knows its request body, the rows it cannot take and its response shape."""

    model_id: str
    prompt: PromptSettings
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    family: ClassVar[str]
    kind: ClassVar[OutputKind]
    invocation_type: ClassVar[str] = "InvokeModel"
    # stop reasons that say the answer was cut off at the token limit (the family's documented values)
    truncated_reasons: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        self._frame: tuple[str, str] | None = None
        self.check_settings()

    @abstractmethod
    def check_settings(self) -> None:
        """Raise ValueError naming the spec field when the prompt/inference settings don't fit."""

    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns of the dataset this adapter reads."""

    @abstractmethod
    def body_for_text(self, text: str) -> dict[str, Any]:
        """The ``modelInput`` body around a row's text (rendered prompt or input text)."""

    @abstractmethod
    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        """Normalize a ``modelOutput`` object."""

    @property
    def embedding_dimensions(self) -> int | None:
        return None

    @property
    @abstractmethod
    def output_type(self) -> pa.StructType:
        """Arrow type of ``modelOutput`` for the JSON reader (only the fields ``parse`` reads)."""

    @abstractmethod
    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        """Vectorized ``parse``: the value column, stop_reason, input_tokens, output_tokens.

        A row whose output lacks the family's shape gets a null value column (reported as an
        unparseable output); rows whose ``modelOutput`` is null are error lines.
        """

    def text_errors(self, texts: pa.Array) -> pa.Array:
        """Vectorized per-row part of ``validate``: the reason a row's text would be rejected, or null."""
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0)
        return pc.if_else(blank, pa.scalar(_EMPTY_PROMPT), pa.scalar(None, pa.string()))

    def row_errors(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        """``text_errors`` of the batch's texts. A template with a letter or digit in its fixed text never
        renders a blank prompt: nothing to check, and the texts are not rendered for it."""
        literals, _ = self._template_parts()
        if any(c.isalnum() for literal in literals for c in literal):
            return pa.nulls(batch.num_rows, pa.string())
        return self.text_errors(self.texts(batch))

    # structured outputs -----------------------------------------------------------------------
    @property
    def structured_mechanism(self) -> Mechanism:
        """How this model is asked for ``prompt.structured``: the prompt, unless the family has a native way."""
        return Mechanism.PROMPT

    @property
    def asks_json_in_prompt(self) -> str:
        """The JSON instruction appended to every prompt when the model has no native mechanism ("" else)."""
        structured = self.prompt.structured
        return structured.instruction() if structured and self.structured_mechanism is Mechanism.PROMPT else ""

    # whole batches --------------------------------------------------------------------------
    def texts(self, batch: pa.RecordBatch | pa.Table, escape: Callable[[pa.Array], pa.Array] | None = None) -> pa.Array:
        """Each row's variable text (the rendered template, or the input column's value), in Arrow; nulls
        render as empty text.

        ``escape`` (JSON string escaping): applied to the column values only; the template's fixed text
        is escaped once, not once per row (escaping is per character, so the result is the same).
        """
        fixed = (lambda text: json.dumps(text, ensure_ascii=False)[1:-1]) if escape else (lambda text: text)
        literals, names = self._template_parts()
        if not names:
            return pa.array([fixed("".join(literals))] * batch.num_rows, pa.string())
        parts: list[Any] = []
        for literal, name in zip(literals, [*names, None]):
            if literal:
                parts.append(pa.scalar(fixed(literal)))
            if name is not None:
                values = self._column_text(batch, name)
                parts.append(escape(values) if escape else values)
        return _as_array(pc.binary_join_element_wise(*parts, "")) if len(parts) > 1 else parts[0]

    def text_chars(self, batch: pa.RecordBatch | pa.Table) -> int:
        """Characters of ``texts(batch)`` in all, counted without rendering them."""
        literals, names = self._template_parts()
        chars = sum(len(literal) for literal in literals) * batch.num_rows
        return chars + sum(int(pc.sum(pc.utf8_length(self._column_text(batch, n))).as_py() or 0) for n in names)

    def _template_parts(self) -> tuple[list[str], list[str]]:
        """The row text as fixed text around column values: literals (one more than names) and column names."""
        if self.prompt.template is None:
            return ["", ""], [self.prompt.input_column or ""]
        literals, names = [""], []
        for literal, name, _, _ in string.Formatter().parse(self.prompt.template):
            literals[-1] += literal
            if name is not None:
                names.append(name)
                literals.append("")
        literals[-1] += self.asks_json_in_prompt
        return literals, names

    @staticmethod
    def _column_text(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
        """A column's values as prompt text (nulls empty); ValueError for a column that cannot be text."""
        values = batch.column(name)
        if pa.types.is_nested(values.type) or pa.types.is_binary(values.type):
            raise ValueError(
                f"column {name!r} is {values.type}; the prompt needs text, numbers or dates (flatten or convert it first)"
            )
        values = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        return _as_array(pc.fill_null(values, ""))

    def request_frame(self) -> tuple[str, str]:
        """The body's JSON text before and after the row's (escaped) text; same bytes as json.dumps."""
        if self._frame is None:
            body = json.dumps(self.body_for_text(_SENTINEL), ensure_ascii=False, separators=(",", ":"))
            before, found, after = body.partition(_SENTINEL)
            assert found and _SENTINEL not in after, "the row text must appear exactly once in the body"
            self._frame = (before, after)
        return self._frame

    def _require_template(self) -> None:
        if not self.prompt.template:
            raise ValueError(f"prompt.template is required for {self.family} model {self.model_id!r}")
        template_fields(self.prompt.template)
        if self.inference.max_tokens <= 0:
            raise ValueError(f"inference.max_tokens must be positive, got {self.inference.max_tokens}")


class TemplatedAdapter(ModelAdapter):
    """Text models: the row's text is ``prompt.template`` rendered over its columns."""

    def check_settings(self) -> None:
        self._require_template()

    def input_columns(self) -> list[str]:
        return template_fields(self.prompt.template or "")


class PromptStringAdapter(TemplatedAdapter):
    """Text models whose body carries one ``prompt`` string: the row's text inside the family's chat template."""

    @abstractmethod
    def prompt_frame(self) -> tuple[str, str]:
        """The prompt before and after the row's text (system prompt and turn markers)."""

    def wrap(self, text: str) -> str:
        before, after = self.prompt_frame()
        return before + text + after


class EmbeddingAdapter(ModelAdapter):
    """Embedding models: the row's text is one column's value; the output is one fixed-size vector.

    Subclasses name where the text goes (``text_field``, for messages), its documented character
    limit, and read the vector and input token count from ``modelOutput`` (per record and in Arrow).
    """

    kind = "embedding"
    text_field: ClassVar[str]
    max_chars: ClassVar[int | None] = None
    fixed_dimensions: ClassVar[int | None] = None  # models with one vector size: inference.dimensions doesn't apply

    def check_settings(self) -> None:
        if not self.prompt.input_column:
            raise ValueError(f"prompt.input_column is required for embedding model {self.model_id!r}")
        if self.prompt.template:
            raise ValueError("prompt.template is not used by embedding models; use prompt.input_column")
        if self.fixed_dimensions is not None:
            if self.inference.dimensions not in (InferenceSettings.dimensions, self.fixed_dimensions):
                raise ValueError(
                    f"inference.dimensions does not apply to {self.model_id!r}: its vectors always have "
                    f"{self.fixed_dimensions} dimensions"
                )
            if not self.inference.normalize:
                raise ValueError(f"inference.normalize does not apply to {self.model_id!r}")

    def input_columns(self) -> list[str]:
        return [self.prompt.input_column or ""]

    @property
    def embedding_dimensions(self) -> int:
        return self.fixed_dimensions or self.inference.dimensions

    def row_errors(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        return self.text_errors(self.texts(batch))  # the input text itself: its length and blankness

    def text_errors(self, texts: pa.Array) -> pa.Array:
        none = pa.scalar(None, pa.string())
        errors = none
        if self.max_chars is not None:
            lengths = pc.utf8_length(texts)
            errors = pc.if_else(
                pc.greater(lengths, self.max_chars),
                pc.binary_join_element_wise(
                    f"ValueError: {self.text_field} has ",
                    pc.cast(lengths, pa.string()),
                    f" characters; {self.model_id} accepts at most {self.max_chars}",
                    "",
                ),
                none,
            )
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0)
        return pc.if_else(blank, pa.scalar(f"ValueError: {self.text_field} must be a non-empty string"), errors)

    @abstractmethod
    def vector_of(self, model_output: Mapping[str, Any]) -> Any:
        """The record's vector as found in ``modelOutput`` (checked by ``parse``)."""

    @abstractmethod
    def vectors_arrow(self, model_output: pa.StructArray) -> pa.Array:
        """Vectorized ``vector_of``: a list<float32> per record, null where there is none."""

    def input_tokens_of(self, model_output: Mapping[str, Any]) -> int | None:
        return None

    def input_tokens_arrow(self, model_output: pa.StructArray) -> pa.Array:
        return pa.nulls(len(model_output), pa.int64())

    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        embedding = self.vector_of(model_output)
        dims = self.embedding_dimensions
        if not isinstance(embedding, list) or len(embedding) != dims:
            got = len(embedding) if isinstance(embedding, list) else type(embedding).__name__
            raise ValueError(f"embedding must be a list of {dims} floats, got {got}")
        tokens = self.input_tokens_of(model_output)
        return ParsedOutput(embedding=embedding, input_tokens=tokens, output_tokens=None if tokens is None else 0)

    def parse_arrow(self, model_output: pa.StructArray) -> dict[str, pa.Array]:
        tokens = self.input_tokens_arrow(model_output)
        return {
            "embedding": fixed_size_vectors(self.vectors_arrow(model_output), self.embedding_dimensions),
            "stop_reason": pa.nulls(len(model_output), pa.string()),
            "input_tokens": tokens,
            "output_tokens": pc.if_else(pc.is_valid(tokens), 0, pa.scalar(None, pa.int64())),
        }


def fixed_size_vectors(vectors: pa.Array, dims: int) -> pa.FixedSizeListArray:
    """float32 vectors of ``dims`` values from a list array; null where a record's list has another length."""
    ok = pc.fill_null(pc.equal(pc.list_value_length(vectors), dims), False).to_numpy(zero_copy_only=False)
    values = np.zeros((len(vectors), dims), dtype=np.float32)
    if ok.any():
        kept = vectors.filter(pa.array(ok))
        values[ok] = kept.flatten().to_numpy(zero_copy_only=False).reshape(-1, dims)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dims, mask=pa.array(~ok))


def single_items(lists: pa.Array) -> pa.Array:
    """Each record's only list item (``outputs[0]``, ``choices[0]``); null unless the list has exactly one."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    starts = np.cumsum(lengths) - lengths
    return lists.flatten().take(pa.array(starts, mask=lengths != 1))


def single_item(model_output: Mapping[str, Any], field: str) -> Any:
    """Per-record ``single_items``: the only item of ``model_output[field]``; ValueError otherwise."""
    items = model_output[field]
    if not isinstance(items, list) or len(items) != 1:
        raise ValueError(f"{field} must be a list of exactly one item")
    return items[0]


def required_str(value: Any, field: str) -> str:
    """A text field of ``modelOutput`` the family always returns; ValueError when it is not a string."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}")
    return value


def join_text_blocks(content: pa.ListArray, text: pa.Array, is_text: pa.Array | None = None) -> pa.Array:
    """Concatenate each record's text blocks (``content`` items) into one string per record."""
    if is_text is not None:
        text = pc.if_else(is_text, text, pa.scalar(""))
    text = pc.fill_null(text, "")
    per_record = pa.ListArray.from_arrays(content.offsets, text, mask=pc.is_null(content))
    return pc.binary_join(per_record, "")


def first_chosen(content: pa.ListArray, values: pa.Array, chosen: pa.Array) -> pa.Array:
    """Per record (``content`` list), the first of its flattened ``values`` where ``chosen``; null if none."""
    parents = pc.cast(pc.list_parent_indices(content), pa.int64())
    chosen = pc.fill_null(chosen, False)
    position = pc.index_in(pa.array(np.arange(len(content), dtype=np.int64)), value_set=parents.filter(chosen))
    return values.filter(chosen).take(position)


def _as_array(values: Any) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


_SENTINEL = "BedrockAssetsRowText7f3a9c"
_EMPTY_PROMPT = "ValueError: the rendered prompt is empty or only whitespace (Bedrock rejects blank text)"
