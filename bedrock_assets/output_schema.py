"""Structured outputs: a JSON schema each answer must match, flattened into typed Parquet columns.

A pipeline's ``output_schema`` is a JSON-schema object whose properties are strings (optionally an
``enum`` or a ``format``), integers, numbers, booleans or arrays of strings. The request asks for it
the way the model can (``Mechanism``; "Get validated JSON results from models",
https://docs.aws.amazon.com/bedrock/latest/userguide/structured-output.html): Claude InvokeModel
bodies carry ``output_config.format``, Converse bodies ``outputConfig.textFormat`` (batch jobs of the
Converse type refuse ``toolConfig``: "Records that include toolConfig fail with a 400 error", "Process
multiple prompts with batch inference"), older Claude and Nova InvokeModel bodies a forced tool, and
models with no native mechanism an instruction in the prompt. The answer is checked against the schema
and each property becomes a column of its own type. An answer that does not match becomes an
``InvalidStructuredOutput`` error row (retriable: a new try may answer well); one cut off at the token
limit a ``TruncatedStructuredOutput`` row (final: the same body would be cut off again).

What structured outputs do not support is refused when the defs.yaml loads, naming the field: the
structured-output page's "JSON Schema limitations" (numerical constraints ``minimum``, ``maximum``,
``multipleOf``; string constraints ``minLength``, ``maxLength``; ``additionalProperties`` other than
``false``; recursive schemas and ``$ref``; array ``minItems`` other than 0 or 1), and string formats
other than the ones it lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TOOL_NAME = "record_output"  # the forced tool whose input is the answer
TOOL_DESCRIPTION = "Record the answer as structured fields."
SCHEMA_NAME = "record_output"  # the name the json_schema output format carries
JSON_INSTRUCTION = "Respond with only a JSON object, no other text, that matches this JSON schema:"
# keywords the structured-output page lists under "not supported" (JSON Schema limitations)
_UNSUPPORTED = {
    "minimum": "numerical constraints (minimum, maximum, multipleOf)",
    "maximum": "numerical constraints (minimum, maximum, multipleOf)",
    "exclusiveMinimum": "numerical constraints (minimum, maximum, multipleOf)",
    "exclusiveMaximum": "numerical constraints (minimum, maximum, multipleOf)",
    "multipleOf": "numerical constraints (minimum, maximum, multipleOf)",
    "minLength": "string constraints (minLength, maxLength)",
    "maxLength": "string constraints (minLength, maxLength)",
    "$ref": "references ($ref): write the property out",
}
# string formats the page lists as supported
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"})


class Mechanism(StrEnum):
    """How a request asks for the schema, per model and invocation type (the README's model table)."""

    OUTPUT_CONFIG = "output_config.format"  # Claude InvokeModel bodies, the models that support it
    TEXT_FORMAT = "outputConfig.textFormat"  # Converse bodies, the models that support it
    FORCED_TOOL = "forced tool"  # InvokeModel bodies with tool use (older Claude, Nova): the answer is the tool input
    PROMPT = "prompt instruction"  # no native mechanism: the prompt asks for the JSON object


_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}
_PY_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class SchemaError(ValueError):
    """The output_schema is not one this pipeline can turn into columns."""


def _check_keywords(node: Mapping[str, Any], where: str) -> None:
    """SchemaError naming the field for a keyword structured outputs do not support."""
    for keyword, what in _UNSUPPORTED.items():
        if keyword in node:
            raise SchemaError(
                f"{where}.{keyword}: Bedrock structured outputs do not support {what}; remove it (say it in the "
                "property's description instead)"
            )
    if node.get("additionalProperties", False) is not False:
        raise SchemaError(f"{where}.additionalProperties: Bedrock structured outputs support only false")


def _check_property(prop: Any, where: str) -> None:
    if isinstance(prop, Mapping):
        _check_keywords(prop, where)
    kind = prop.get("type") if isinstance(prop, Mapping) else None
    if kind == "array":
        items = prop.get("items") or {}
        if items.get("type") != "string":
            raise SchemaError(f"{where}: arrays must be of strings (items: {{type: string}})")
        _check_keywords(items, f"{where}.items")
        if prop.get("minItems", 0) not in (0, 1):
            raise SchemaError(f"{where}.minItems: Bedrock structured outputs support only 0 or 1")
    elif kind not in _TYPES:
        raise SchemaError(f"{where}: type must be string, integer, number, boolean or array (of strings)")
    if "enum" in prop and (kind != "string" or not all(isinstance(v, str) for v in prop["enum"])):
        raise SchemaError(f"{where}: enum is supported for strings only")
    if "format" in prop and (kind != "string" or prop["format"] not in _FORMATS):
        raise SchemaError(f"{where}.format: Bedrock structured outputs support string formats {sorted(_FORMATS)}")


@dataclass(frozen=True)
class OutputSchema:
    """A validated output_schema: its properties, in order, with their Arrow types."""

    schema: Mapping[str, Any]

    @classmethod
    def parse(cls, schema: Mapping[str, Any], reserved: frozenset[str] = frozenset()) -> OutputSchema:
        """Check the schema: an object of supported properties, none named like a column the pipeline adds."""
        if schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping):
            raise SchemaError("output_schema must be a JSON schema of type object with properties")
        if not schema["properties"]:
            raise SchemaError("output_schema.properties is empty")
        _check_keywords(schema, "output_schema")
        for name, prop in schema["properties"].items():
            where = f"output_schema.properties.{name}"
            if not _NAME.fullmatch(name):
                raise SchemaError(f"{where}: property names must be [a-z][a-z0-9_]* (they become column names)")
            if name in reserved:
                raise SchemaError(f"{where}: {name!r} is a column the pipeline adds or reads; rename the property")
            _check_property(prop, where)
        unknown = [r for r in schema.get("required", []) if r not in schema["properties"]]
        if unknown:
            raise SchemaError(f"output_schema.required names unknown properties {unknown}")
        return cls(schema)

    @property
    def wire_schema(self) -> dict[str, Any]:
        """The schema as a request carries it: no other properties than the declared ones (structured outputs
        support ``additionalProperties`` only as ``false``)."""
        return {**self.schema, "additionalProperties": False}

    @property
    def properties(self) -> dict[str, Mapping[str, Any]]:
        return dict(self.schema["properties"])

    @property
    def required(self) -> list[str]:
        return list(self.schema.get("required", []))

    def arrow_type(self, name: str) -> pa.DataType:
        prop = self.properties[name]
        return pa.list_(pa.string()) if prop["type"] == "array" else _TYPES[prop["type"]]

    @property
    def struct_type(self) -> pa.StructType:
        return pa.struct([(name, self.arrow_type(name)) for name in self.properties])

    def instruction(self) -> str:
        """What a prompt-only family is told, after the prompt."""
        return f"\n\n{JSON_INSTRUCTION}\n" + json.dumps(self.schema, separators=(",", ":"))

    def output_config(self) -> dict[str, Any]:
        """Claude InvokeModel's ``output_config``: the JSON schema as an object."""
        return {"format": {"type": "json_schema", "schema": self.wire_schema}}

    def text_format(self) -> dict[str, Any]:
        """Converse's ``outputConfig``: the JSON schema as a JSON string (``JsonSchemaDefinition.schema``)."""
        definition = {"schema": json.dumps(self.wire_schema, separators=(",", ":")), "name": SCHEMA_NAME}
        return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}

    # one answer ---------------------------------------------------------------------------------
    def check(self, value: Any) -> str | None:
        """Why one answer does not match the schema, or None."""
        if not isinstance(value, Mapping):
            return f"the answer is not a JSON object but {type(value).__name__}"
        for name in self.required:
            if value.get(name) is None:
                return f"required property {name!r} is missing"
        for name, prop in self.properties.items():
            v = value.get(name)
            if v is None:
                continue
            if prop["type"] == "array":
                if not isinstance(v, list) or not all(isinstance(i, str) for i in v):
                    return f"property {name!r} must be an array of strings"
                continue
            if isinstance(v, bool) and prop["type"] != "boolean" or not isinstance(v, _PY_TYPES[prop["type"]]):
                return f"property {name!r} must be {prop['type']}, got {json.dumps(v)[:60]}"
            if prop["type"] == "integer" and isinstance(v, int) and not -(2**63) <= v < 2**63:
                return f"property {name!r} is out of the 64-bit integer range"
            if "enum" in prop and v not in prop["enum"]:
                return f"property {name!r} must be one of {prop['enum']}, got {v!r}"
        return None

    def from_text(self, text: str | None) -> tuple[dict | None, str | None]:
        """The answer in a text reply (a bare JSON object, optionally fenced), or why there is none."""
        if text is None:
            return None, "no text to read the answer from"
        body = _FENCE.sub(r"\1", text.strip())
        try:
            value = json.loads(body)
        except json.JSONDecodeError as e:
            return None, f"the answer is not JSON ({e.msg} at character {e.pos})"
        problem = self.check(value)
        return (None, problem) if problem else (value, None)

    # many answers, vectorized ---------------------------------------------------------------------
    def check_struct(self, answers: pa.StructArray) -> pa.Array:
        """Per answer (already typed by Arrow): why it does not match (required, enum), or null."""
        problem = pa.nulls(len(answers), pa.string())
        missing_answer = pc.is_null(answers)
        for name in reversed(self.required):
            field = pc.struct_field(answers, name)
            problem = pc.if_else(pc.is_null(field), f"required property {name!r} is missing", problem)
        for name, prop in self.properties.items():
            if prop["type"] == "array":  # a null item fails, as it does one answer at a time
                field = pc.struct_field(answers, name)
                with_null = pc.list_parent_indices(field).filter(pc.is_null(pc.list_flatten(field)))
                bad = pc.is_in(pa.array(range(len(answers)), pa.int64()), value_set=pc.cast(with_null, pa.int64()))
                problem = pc.if_else(bad, f"property {name!r} must be an array of strings", problem)
            if "enum" in prop:
                field = pc.struct_field(answers, name)
                bad = pc.and_(pc.is_valid(field), pc.invert(pc.is_in(field, value_set=pa.array(prop["enum"]))))
                problem = pc.if_else(bad, f"property {name!r} must be one of {prop['enum']}", problem)
        return pc.if_else(missing_answer, "the model gave no structured answer", problem)

    def columns(self, answers: pa.StructArray, ok: pa.Array) -> dict[str, pa.Array]:
        """One typed column per property; null where the row has no valid answer."""
        return {
            name: pc.if_else(ok, pc.struct_field(answers, name), pa.scalar(None, self.arrow_type(name)))
            for name in self.properties
        }

    def rows_to_struct(self, values: list[Mapping[str, Any] | None]) -> pa.StructArray:
        """Python answers (None: no valid answer) as the typed struct array."""
        return pa.array(
            [None if v is None else {name: v.get(name) for name in self.properties} for v in values],
            self.struct_type,
        )
