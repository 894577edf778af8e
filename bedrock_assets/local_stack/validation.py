"""Per-record request validation: what Bedrock checks of each record's ``modelInput`` at run time, per family.

Each family checks its own InvokeModel schema (required fields, types, ranges, no unknown keys), so
a body written for another family is refused; a Converse-type job's records are checked against the
Converse schema. A record that fails gets an error line (errorCode 400) instead of a model output.

Structured outputs ("Get validated JSON results from models",
https://docs.aws.amazon.com/bedrock/latest/userguide/structured-output.html): Claude's
``output_config.format`` and Converse's ``outputConfig.textFormat`` are taken in their documented
shapes, by the models that support them, with a schema free of what the page lists as not supported.
A Converse-type batch record with ``toolConfig`` fails: "Batch inference doesn't support tool calling
(function calling) for jobs that use the Converse invocation type. Records that include toolConfig fail
with a 400 error" (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference.html); the
runtime Converse API takes tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .catalog import (
    CLAUDE,
    COHERE_EMBED,
    EMBEDDING_FAMILIES,
    LLAMA,
    MISTRAL,
    MISTRAL_CHAT,
    NOVA,
    TITAN_EMBED_V1,
    TITAN_EMBED_V2,
)

CLAUDE_VERSION = "bedrock-2023-05-31"
TITAN_DIMENSIONS = (256, 512, 1024)
NOVA_SCHEMA_VERSION = "messages-v1"
LLAMA_MAX_GEN_LEN = 2048
COHERE_MAX_TEXTS = 96
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
COHERE_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
CONVERSE_UNSUPPORTED = (
    "This action doesn't support the model that you provided. Try again with a supported text or chat model."
)
CONVERSE_BATCH_TOOLS = (
    "toolConfig: batch inference doesn't support tool calling (function calling) for jobs that use the Converse "
    "invocation type; create the job with the InvokeModel invocation type to use tools"
)
# the Anthropic Claude Messages request fields (model-parameters-anthropic-claude-messages-request-response.html)
CLAUDE_KEYS = (
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "system",
    "messages",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",  # deprecated for output_config.format, still taken
)
# the JSON Schema features structured outputs do not support ("JSON Schema limitations")
UNSUPPORTED_SCHEMA_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
UNSUPPORTED_STRING_KEYWORDS = ("minLength", "maxLength")


@dataclass(frozen=True)
class RecordContext:
    """What a record is checked against besides its body: the model's features, and where it came from."""

    structured_outputs: bool = False  # the model takes a JSON schema output format
    batch: bool = True  # a batch job's record (else a runtime call)


class RecordValidationError(Exception):
    """A record's modelInput is not a valid request body for its model."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise RecordValidationError(message)


def _non_empty_list(body: dict, key: str) -> list:
    value = body.get(key)
    _require(isinstance(value, list) and len(value) > 0, f"{key}: must be a non-empty list")
    return value  # type: ignore[return-value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_claude(body: dict, context: RecordContext) -> None:
    _only_keys(body, CLAUDE_KEYS)
    _require(
        body.get("anthropic_version") == CLAUDE_VERSION,
        f"anthropic_version: must be '{CLAUDE_VERSION}'"
        + ("" if "anthropic_version" in body else " (field is missing)"),
    )
    _require(_is_int(body.get("max_tokens")), "max_tokens: required integer field")
    _require(body["max_tokens"] > 0, "max_tokens: must be greater than 0")
    messages = _non_empty_list(body, "messages")
    for i, msg in enumerate(messages):
        _require(isinstance(msg, dict), f"messages.{i}: must be an object")
        _require(msg.get("role") in ("user", "assistant"), f"messages.{i}.role: must be 'user' or 'assistant'")
        _require("content" in msg, f"messages.{i}.content: field required")
    if "output_config" in body:
        config = body["output_config"]
        _require(isinstance(config, dict) and isinstance(config.get("format"), dict), "output_config.format: required")
        fmt = config["format"]
        _require(fmt.get("type") == "json_schema", "output_config.format.type: must be 'json_schema'")
        _require(context.structured_outputs, "output_config.format: this model does not support structured outputs")
        check_output_schema(fmt.get("schema"), "output_config.format.schema")


def check_output_schema(schema: Any, where: str) -> None:
    """A structured-output JSON schema: an object schema without the features structured outputs do not support."""
    _require(
        isinstance(schema, dict) and schema.get("type") == "object", f"{where}: must be a JSON schema of type object"
    )
    _schema_features(schema, where, schema, ())


def _schema_features(node: Any, where: str, root: dict, refs: tuple[str, ...]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _schema_features(item, f"{where}.{i}", root, refs)
        return
    if not isinstance(node, dict):
        return
    for key in UNSUPPORTED_SCHEMA_KEYWORDS:
        _require(key not in node, f"{where}.{key}: numerical constraints are not supported by structured outputs")
    for key in UNSUPPORTED_STRING_KEYWORDS:
        _require(key not in node, f"{where}.{key}: string constraints are not supported by structured outputs")
    if "additionalProperties" in node:
        _require(node["additionalProperties"] is False, f"{where}.additionalProperties: only false is supported")
    if "minItems" in node:
        _require(node["minItems"] in (0, 1), f"{where}.minItems: only 0 and 1 are supported")
    if "$ref" in node:
        ref = str(node["$ref"])
        _require(ref.startswith("#"), f"{where}.$ref: external references are not supported")
        _require(ref not in refs and ref != "#", f"{where}.$ref: recursive schemas are not supported")
        _schema_features(_resolve(root, ref), where, root, (*refs, ref))
    for key, value in node.items():
        if key != "$ref" and isinstance(value, (dict, list)):
            _schema_features(value, f"{where}.{key}", root, refs)


def _resolve(root: dict, ref: str) -> Any:
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        _require(isinstance(node, dict) and part in node, f"$ref {ref}: no such definition")
        node = node[part]
    return node


def _only_keys(body: dict, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(body) - set(allowed))
    _require(not extra, f"#: extraneous key(s) {extra} are not permitted")


def _number(body: dict, key: str, low: float, high: float, integer: bool = False) -> None:
    if key in body:
        value = body[key]
        ok = (_is_int(value) if integer else isinstance(value, (int, float)) and not isinstance(value, bool)) and (
            low <= value <= high
        )
        _require(ok, f"{key}: must be {'an integer' if integer else 'a number'} in [{low:g}, {high:g}]")


def _string(body: dict, key: str) -> None:
    _require(isinstance(body.get(key), str) and body[key] != "", f"{key}: required non-empty string")


def _input_text(body: dict) -> None:
    text = body.get("inputText")
    _require(isinstance(text, str) and text.strip() != "", "inputText: required non-empty string")


def _validate_titan_v2(body: dict) -> None:
    _input_text(body)
    _only_keys(body, ("inputText", "dimensions", "normalize", "embeddingTypes"))
    if "dimensions" in body:
        _require(
            body["dimensions"] in TITAN_DIMENSIONS and _is_int(body["dimensions"]),
            f"dimensions: must be one of {list(TITAN_DIMENSIONS)}",
        )
    if "normalize" in body:
        _require(isinstance(body["normalize"], bool), "normalize: must be a boolean")


def _validate_titan_v1(body: dict) -> None:
    _input_text(body)
    _only_keys(body, ("inputText",))


def _validate_messages(body: dict, allowed: tuple[str, ...], config_keys: tuple[str, ...]) -> None:
    """The Converse / Nova messages schema: content blocks with text, system text blocks, inferenceConfig."""
    messages = _non_empty_list(body, "messages")
    for i, msg in enumerate(messages):
        _require(isinstance(msg, dict), f"messages.{i}: must be an object")
        _require(msg.get("role") in ("user", "assistant"), f"messages.{i}.role: must be 'user' or 'assistant'")
        content = msg.get("content")
        _require(isinstance(content, list) and bool(content), f"messages.{i}.content: must be a non-empty list")
        for j, block in enumerate(content):
            _require(
                isinstance(block, dict) and isinstance(block.get("text"), str),
                f"messages.{i}.content.{j}: must be an object with a string 'text'",
            )
    system = body.get("system")
    if system is not None:
        _require(
            isinstance(system, list) and all(isinstance(s, dict) and isinstance(s.get("text"), str) for s in system),
            "system: must be a list of objects with a string 'text'",
        )
    cfg = body.get("inferenceConfig")
    if cfg is not None:
        _require(isinstance(cfg, dict), "inferenceConfig: must be an object")
        extra = set(cfg) - set(config_keys)
        _require(not extra, f"inferenceConfig: unknown key(s) {sorted(extra)}")
        if "maxTokens" in cfg:
            _require(
                _is_int(cfg["maxTokens"]) and cfg["maxTokens"] > 0,
                "inferenceConfig.maxTokens: must be a positive integer",
            )
        for key in ("temperature", "topP"):
            if key in cfg:
                v = cfg[key]
                _require(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
                    f"inferenceConfig.{key}: must be a number in [0, 1]",
                )
        if "stopSequences" in cfg:
            _require(
                isinstance(cfg["stopSequences"], list) and all(isinstance(s, str) for s in cfg["stopSequences"]),
                "inferenceConfig.stopSequences: must be a list of strings",
            )
    _only_keys(body, allowed)


def _validate_converse(body: dict, context: RecordContext) -> None:
    _require(not (context.batch and "toolConfig" in body), CONVERSE_BATCH_TOOLS)
    _validate_messages(
        body,
        ("messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields", "outputConfig"),
        ("maxTokens", "temperature", "topP", "stopSequences"),
    )
    if "outputConfig" in body:
        _converse_output_config(body["outputConfig"], context)


def _converse_output_config(config: Any, context: RecordContext) -> None:
    """Converse's OutputConfig: textFormat {type json_schema, structure {jsonSchema {schema: a JSON string}}}."""
    _require(isinstance(config, dict), "outputConfig: must be an object")
    _require(
        not set(config) - {"textFormat", "effort"},
        f"outputConfig: unknown key(s) {sorted(set(config) - {'textFormat', 'effort'})}",
    )
    text_format = config.get("textFormat")
    if text_format is None:
        return
    _require(isinstance(text_format, dict), "outputConfig.textFormat: must be an object")
    _require(text_format.get("type") == "json_schema", "outputConfig.textFormat.type: must be 'json_schema'")
    structure = text_format.get("structure")
    _require(
        isinstance(structure, dict) and set(structure) == {"jsonSchema"},
        "outputConfig.textFormat.structure: must hold jsonSchema",
    )
    definition = structure["jsonSchema"]
    _require(
        isinstance(definition, dict) and isinstance(definition.get("schema"), str),
        "outputConfig.textFormat.structure.jsonSchema.schema: required string",
    )
    for key in ("name", "description"):
        _require(
            key not in definition or isinstance(definition[key], str),
            f"outputConfig.textFormat.structure.jsonSchema.{key}: must be a string",
        )
    try:
        schema = json.loads(definition["schema"])
    except json.JSONDecodeError:
        raise RecordValidationError("outputConfig.textFormat.structure.jsonSchema.schema: not valid JSON") from None
    _require(context.structured_outputs, "outputConfig.textFormat: this model does not support structured outputs")
    check_output_schema(schema, "outputConfig.textFormat.structure.jsonSchema.schema")


def _validate_nova(body: dict) -> None:
    """Nova InvokeModel: the messages schema, topK allowed in inferenceConfig, an optional schemaVersion."""
    if "schemaVersion" in body:
        _require(body["schemaVersion"] == NOVA_SCHEMA_VERSION, f"schemaVersion: must be '{NOVA_SCHEMA_VERSION}'")
    _validate_messages(
        body,
        ("schemaVersion", "messages", "system", "inferenceConfig", "toolConfig"),
        ("maxTokens", "temperature", "topP", "topK", "stopSequences"),
    )


def _validate_llama(body: dict) -> None:
    _string(body, "prompt")
    _only_keys(body, ("prompt", "temperature", "top_p", "max_gen_len", "images"))
    _number(body, "max_gen_len", 1, LLAMA_MAX_GEN_LEN, integer=True)
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)


def _validate_mistral(body: dict) -> None:
    """Mistral text completion (7B, Mixtral, Large 24.02, Small 24.02)."""
    _string(body, "prompt")
    _only_keys(body, ("prompt", "max_tokens", "stop", "temperature", "top_p", "top_k"))
    _number(body, "max_tokens", 1, float("inf"), integer=True)
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _number(body, "top_k", 1, 200, integer=True)
    if "stop" in body:
        stop = body["stop"]
        _require(
            isinstance(stop, list) and len(stop) <= 10 and all(isinstance(x, str) for x in stop),
            "stop: must be a list of at most 10 strings",
        )


def _validate_mistral_chat(body: dict) -> None:
    """Mistral chat completion (Large 2, 24.07)."""
    messages = _non_empty_list(body, "messages")
    for i, msg in enumerate(messages):
        _require(isinstance(msg, dict), f"messages.{i}: must be an object")
        _require(
            msg.get("role") in ("system", "user", "assistant", "tool"),
            f"messages.{i}.role: must be one of system, user, assistant, tool",
        )
        _require(isinstance(msg.get("content"), str), f"messages.{i}.content: must be a string")
    _only_keys(body, ("messages", "tools", "tool_choice", "max_tokens", "temperature", "top_p"))
    _number(body, "max_tokens", 1, float("inf"), integer=True)
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)


def _validate_cohere_embed(body: dict) -> None:
    texts = body.get("texts")
    _require(
        isinstance(texts, list) and 0 < len(texts) <= COHERE_MAX_TEXTS and all(isinstance(t, str) for t in texts),
        f"texts: must be a list of 1-{COHERE_MAX_TEXTS} strings",
    )
    _require(
        body.get("input_type") in COHERE_INPUT_TYPES,
        f"input_type: required, one of {list(COHERE_INPUT_TYPES)}" + ("" if "input_type" in body else " (missing)"),
    )
    _only_keys(body, ("texts", "images", "input_type", "truncate", "embedding_types"))
    if "truncate" in body:
        _require(body["truncate"] in ("NONE", "START", "END"), "truncate: must be one of NONE, START, END")
    if "embedding_types" in body:
        types = body["embedding_types"]
        _require(
            isinstance(types, list) and bool(types) and set(types) <= set(COHERE_EMBEDDING_TYPES),
            f"embedding_types: must be a non-empty list of {list(COHERE_EMBEDDING_TYPES)}",
        )


_VALIDATORS = {
    TITAN_EMBED_V2: _validate_titan_v2,
    TITAN_EMBED_V1: _validate_titan_v1,
    NOVA: _validate_nova,
    LLAMA: _validate_llama,
    MISTRAL: _validate_mistral,
    MISTRAL_CHAT: _validate_mistral_chat,
    COHERE_EMBED: _validate_cohere_embed,
}


def validate_record(family: str, invocation_type: str, model_input: Any, context: RecordContext | None = None) -> None:
    """Raise RecordValidationError when a record's modelInput would be rejected by Bedrock.

    Each family checks its own InvokeModel schema (required fields, types, ranges, no unknown keys),
    so a body written for another family is refused; hidden models (``generic``) accept any object.
    """
    context = context or RecordContext()
    _require(isinstance(model_input, dict), "modelInput: must be a JSON object")
    _require("modelId" not in model_input, "modelInput: key 'modelId' is not permitted in a batch record")
    if invocation_type == "Converse":
        _require(family not in EMBEDDING_FAMILIES, CONVERSE_UNSUPPORTED)
        _validate_converse(model_input, context)
    elif family == CLAUDE:
        _validate_claude(model_input, context)
    elif family in _VALIDATORS:
        _VALIDATORS[family](model_input)
