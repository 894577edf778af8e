"""The model-adapter contract: build ``modelInput``, validate it, parse ``modelOutput``."""

from __future__ import annotations

import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

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
        self.check_settings()

    @abstractmethod
    def check_settings(self) -> None:
        """Raise ValueError naming the spec field when the prompt/inference settings don't fit."""

    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns of the dataset this adapter reads."""

    @abstractmethod
    def build(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The ``modelInput`` body for one row."""

    @abstractmethod
    def validate(self, body: Mapping[str, Any]) -> None:
        """Raise ValueError if Bedrock would reject this body record by record."""

    @abstractmethod
    def parse(self, model_output: Mapping[str, Any]) -> ParsedOutput:
        """Normalize a ``modelOutput`` object."""

    @property
    def embedding_dimensions(self) -> int | None:
        return None

    # shared helpers ---------------------------------------------------------------------------
    def render(self, row: Mapping[str, Any]) -> str:
        assert self.prompt.template is not None
        return self.prompt.template.format_map({c: _text(row[c]) for c in self.input_columns()})

    def _require_template(self) -> None:
        if not self.prompt.template:
            raise ValueError(f"prompt.template is required for {self.family} model {self.model_id!r}")
        template_fields(self.prompt.template)
        if self.inference.max_tokens <= 0:
            raise ValueError(f"inference.max_tokens must be positive, got {self.inference.max_tokens}")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def reject_model_id(body: Mapping[str, Any]) -> None:
    if "modelId" in body:
        raise ValueError("modelInput must not contain 'modelId' (Bedrock rejects it per record)")
