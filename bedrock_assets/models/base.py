"""The model-adapter contract: build ``modelInput``, validate it, parse ``modelOutput``."""

from __future__ import annotations

import json
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc

OutputKind = Literal["text", "embedding"]


@dataclass(frozen=True)
class PromptSettings:
    """How a row becomes a request: a template over columns (text) or one column (embeddings)."""

    template: str | None = None
    system: str | None = None
    input_column: str | None = None


@dataclass(frozen=True)
class InferenceSettings:
    max_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    dimensions: int = 1024
    normalize: bool = True


@dataclass
class ParsedOutput:
    """One record's model output, normalized across families."""

    text: str | None = None
    embedding: list[float] | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


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
    """A model family: knows its request body, its validation rules and its response shape."""

    model_id: str
    prompt: PromptSettings
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    family: ClassVar[str]
    kind: ClassVar[OutputKind]
    invocation_type: ClassVar[str] = "InvokeModel"

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
    def validate(self, body: Mapping[str, Any]) -> None:
        """Raise ValueError if Bedrock would reject this body record by record."""

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

    # one row --------------------------------------------------------------------------------
    def text_for(self, row: Mapping[str, Any]) -> str:
        """A row's variable text: the rendered template, or the input column's value."""
        if self.prompt.template is None:
            return _text(row[self.prompt.input_column])
        return self.prompt.template.format_map({c: _text(row[c]) for c in self.input_columns()})

    def build(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The ``modelInput`` body for one row."""
        return self.body_for_text(self.text_for(row))

    # whole batches --------------------------------------------------------------------------
    def texts(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        """``text_for`` over a batch, in Arrow (nulls render as empty text, like ``text_for``)."""

        def column(name: str) -> Any:
            values = batch.column(name)
            if pa.types.is_nested(values.type) or pa.types.is_binary(values.type):
                raise ValueError(
                    f"column {name!r} is {values.type}; the prompt needs text, numbers or dates "
                    "(flatten or convert it first)"
                )
            values = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
            return pc.fill_null(values, "")

        if self.prompt.template is None:
            return _as_array(column(self.prompt.input_column))
        parts: list[Any] = []
        for literal, name, _, _ in string.Formatter().parse(self.prompt.template):
            if literal:
                parts.append(pa.scalar(literal))
            if name is not None:
                parts.append(column(name))
        if not any(isinstance(p, (pa.Array, pa.ChunkedArray)) for p in parts):
            return pa.array([self.prompt.template] * batch.num_rows, pa.string())
        return _as_array(pc.binary_join_element_wise(*parts, ""))

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


def join_text_blocks(content: pa.ListArray, text: pa.Array, is_text: pa.Array | None = None) -> pa.Array:
    """Concatenate each record's text blocks (``content`` items) into one string per record."""
    if is_text is not None:
        text = pc.if_else(is_text, text, pa.scalar(""))
    text = pc.fill_null(text, "")
    per_record = pa.ListArray.from_arrays(content.offsets, text, mask=pc.is_null(content))
    return pc.binary_join(per_record, "")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _as_array(values: Any) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


_SENTINEL = "BedrockAssetsRowText7f3a9c"
_EMPTY_PROMPT = "ValueError: the rendered prompt is empty or only whitespace (Bedrock rejects blank text)"


def reject_model_id(body: Mapping[str, Any]) -> None:
    if "modelId" in body:
        raise ValueError("modelInput must not contain 'modelId' (Bedrock rejects it per record)")
