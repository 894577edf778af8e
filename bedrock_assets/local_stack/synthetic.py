"""Deterministic synthetic model outputs for the Bedrock batch emulator (and its runtime API).

Every output is clearly marked as emulated (texts start with ``[emulated]``, Claude ids with
``msg_emulated_``) and is seeded by a hash of the record's ``modelInput``, so reruns give identical
results. Per-record request validation mirrors what Bedrock checks at run time, per family (Claude,
Nova, Llama, Mistral text and chat completion, Titan Text Embeddings V1/V2, Cohere Embed v3): a
record that fails it, such as a body written for another family, gets an error line (errorCode 400)
instead of a model output. Outputs follow each family's documented InvokeModel response, with token
counts where the model returns them (not Mistral's or Cohere's: the manifest still counts them).

Input size limits: a record too large for its model gets ``INPUT_TOO_LONG`` instead. Embedding
models have documented character limits (Titan Text Embeddings V2: 50,000 characters of
``inputText``; Cohere Embed: 2,048 per text). Text models are checked against their context window
(``catalog.ModelInfo.context_tokens``) with the emulator's own token estimate: one token per 4
characters, rounded up, of the prompt text (system text, every message's text blocks, ``prompt``).

Batch jobs answer the records whose bodies have their family's usual compact layout in bulk
(``synthesize_bulk``: Claude and Titan Text Embeddings V2 so far), column-wise with Arrow and numpy
and byte for byte as ``synthesize_batch`` answers them one by one.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.structured import JSON_INSTRUCTION

from .catalog import (
    CLAUDE,
    COHERE_EMBED,
    EMBEDDING_FAMILIES,
    GENERIC,
    LLAMA,
    MISTRAL,
    MISTRAL_CHAT,
    NOVA,
    TITAN_EMBED_V1,
    TITAN_EMBED_V2,
    ModelInfo,
    lookup,
)

CLAUDE_VERSION = "bedrock-2023-05-31"
TITAN_DIMENSIONS = (256, 512, 1024)
TITAN_V1_DIMENSIONS = 1536
NOVA_SCHEMA_VERSION = "messages-v1"
LLAMA_MAX_GEN_LEN = 2048
COHERE_DIMENSIONS = 1024
COHERE_MAX_TEXTS = 96
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
COHERE_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
INPUT_TOO_LONG = "Input is too long for requested model."
CONVERSE_UNSUPPORTED = (
    "This action doesn't support the model that you provided. Try again with a supported text or chat model."
)
_MIN_WORDS, _MAX_WORDS = 8, 40  # words in an emulated text
_WORDS = (
    "synthetic answer generated locally by the bedrock batch emulator without any real model "
    "call it is deterministic for a given input and safe to use in tests pipelines demos and "
    "benchmarks where only the shape of the response matters rather than its meaning"
).split()


def model_family(model_id: str) -> str | None:
    """Return the emulated model family for a model id / profile / ARN, or None if it is not emulated.

    Application inference profiles and provisioned models hide their model, so they map to ``"generic"``.
    """
    info = lookup(model_id)
    return info.family if info else None


@dataclass(frozen=True)
class SyntheticResult:
    """Outcome for one record: ``output_json`` (serialized modelOutput) or ``error``."""

    output_json: str | None
    error: str | None
    input_tokens: int = 0
    output_tokens: int = 0


def input_seed(model_input: Any) -> int:
    """Stable 64-bit seed derived from a record's modelInput."""
    canonical = json.dumps(model_input, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


def _tokens(text_chars: int) -> int:
    return max(1, (text_chars + 3) // 4)


def _emulated_text(seed: int, model_id: str, max_tokens: int | None) -> tuple[str, bool]:
    """Deterministic marked text; returns (text, truncated_by_max_tokens)."""
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(rng.randint(_MIN_WORDS, _MAX_WORDS))]
    text = f"[emulated] {model_id}: " + " ".join(words) + "."
    if max_tokens is not None and _tokens(len(text)) > max_tokens:
        return text[: max(1, max_tokens * 4)], True
    return text, False


def _text_of_content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


# --- per-record validation ------------------------------------------------------------------


class RecordValidationError(Exception):
    """A record's modelInput is not a valid request body for its model."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise RecordValidationError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_claude(body: dict) -> None:
    _require(
        body.get("anthropic_version") == CLAUDE_VERSION,
        f"anthropic_version: must be '{CLAUDE_VERSION}'"
        + ("" if "anthropic_version" in body else " (field is missing)"),
    )
    _require(_is_int(body.get("max_tokens")), "max_tokens: required integer field")
    _require(body["max_tokens"] > 0, "max_tokens: must be greater than 0")
    messages = body.get("messages")
    _require(isinstance(messages, list) and len(messages) > 0, "messages: must be a non-empty list")
    for i, msg in enumerate(messages):
        _require(isinstance(msg, dict), f"messages.{i}: must be an object")
        _require(msg.get("role") in ("user", "assistant"), f"messages.{i}.role: must be 'user' or 'assistant'")
        _require("content" in msg, f"messages.{i}.content: field required")


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
    messages = body.get("messages")
    _require(isinstance(messages, list) and len(messages) > 0, "messages: must be a non-empty list")
    for i, msg in enumerate(messages):
        _require(isinstance(msg, dict), f"messages.{i}: must be an object")
        _require(msg.get("role") in ("user", "assistant"), f"messages.{i}.role: must be 'user' or 'assistant'")
        content = msg.get("content")
        _require(isinstance(content, list) and content, f"messages.{i}.content: must be a non-empty list")
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


def _validate_converse(body: dict) -> None:
    _validate_messages(
        body,
        ("messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"),
        ("maxTokens", "temperature", "topP", "stopSequences"),
    )


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
    messages = body.get("messages")
    _require(isinstance(messages, list) and len(messages) > 0, "messages: must be a non-empty list")
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
            isinstance(types, list) and types and set(types) <= set(COHERE_EMBEDDING_TYPES),
            f"embedding_types: must be a non-empty list of {list(COHERE_EMBEDDING_TYPES)}",
        )


_VALIDATORS = {
    CLAUDE: _validate_claude,
    TITAN_EMBED_V2: _validate_titan_v2,
    TITAN_EMBED_V1: _validate_titan_v1,
    NOVA: _validate_nova,
    LLAMA: _validate_llama,
    MISTRAL: _validate_mistral,
    MISTRAL_CHAT: _validate_mistral_chat,
    COHERE_EMBED: _validate_cohere_embed,
}


def validate_record(family: str, invocation_type: str, model_input: Any) -> None:
    """Raise RecordValidationError when a record's modelInput would be rejected by Bedrock.

    Each family checks its own InvokeModel schema (required fields, types, ranges, no unknown keys),
    so a body written for another family is refused; hidden models (``generic``) accept any object.
    """
    _require(isinstance(model_input, dict), "modelInput: must be a JSON object")
    _require("modelId" not in model_input, "modelInput: key 'modelId' is not permitted in a batch record")
    if invocation_type == "Converse":
        _require(family not in EMBEDDING_FAMILIES, CONVERSE_UNSUPPORTED)
        _validate_converse(model_input)
    elif family in _VALIDATORS:
        _VALIDATORS[family](model_input)


# --- output generation ----------------------------------------------------------------------


def round_significant(values: np.ndarray, digits: int = 7) -> np.ndarray:
    """Round each float to ``digits`` significant digits (vectorized)."""
    mag = np.abs(values)
    exp = np.floor(np.log10(np.where(mag == 0, 1.0, mag)))
    scale = 10.0 ** (digits - 1 - exp)
    return np.round(values * scale) / scale


def format_vectors(matrix: np.ndarray) -> list[str]:
    """Serialize each row of a 2-D float array as a compact JSON array string (fast, via Arrow)."""
    return ["[" + values for values in vector_values(matrix).to_pylist()]


def vector_values(matrix: np.ndarray) -> pa.Array:
    """Each row as a JSON array without its ``[``: the values as Arrow's float formatting writes them.

    Arrow writes a value of 7 significant digits (``round_significant``) between 1e-6 and 1 as
    ``[-]0.<zeros><digits>`` without trailing zeros: here each is laid out in 16 bytes (that prefix,
    7 digits, the separator, zero bytes for what it lacks) and the zero bytes are filtered out. A
    row holding any other value (0, 1e-7, 1.5, ...) is written by Arrow.
    """
    blocks = [_slot_values(matrix[start : start + _SLOT_ROWS]) for start in range(0, len(matrix), _SLOT_ROWS)]
    return pa.concat_arrays(blocks) if blocks else pa.array([], pa.string())


def _slot_values(matrix: np.ndarray) -> pa.Array:
    """``vector_values`` of up to _SLOT_ROWS rows."""
    rows, dims = matrix.shape
    magnitude = np.abs(matrix)
    exponent = np.floor(np.log10(np.where(magnitude == 0, 1.0, magnitude)))
    with np.errstate(over="ignore", invalid="ignore"):  # values Arrow writes (inf, nan, 5e-324, ...)
        digits = np.rint(magnitude * 10.0 ** (6 - exponent)).astype(np.int64)
    usual = (exponent >= -6) & (exponent <= -1) & (digits >= 10**6) & (digits < 10**7)
    digits[~usual] = 10**6
    prefix = np.where(usual, -1 - exponent, 0).astype(np.intp) + 6 * (matrix < 0)
    high, low = np.divmod(digits, 10_000)
    slots = np.empty((rows, dims, 2), np.uint64)
    slots[..., 0] = _VALUE_PREFIXES[prefix]
    slots[..., 1] = np.where(low == 0, _DIGITS3_TRIMMED[high], _DIGITS3[high] | _DIGITS4_TRIMMED[low] << np.uint64(24))
    slots[..., 1] |= _SEPARATOR
    slots[:, -1, 1] ^= _SEPARATOR ^ _CLOSE
    flat = slots.view(np.uint8).reshape(-1)
    text = np.packbits(flat != 0, bitorder="little")
    offsets = np.zeros(rows + 1, np.int32)
    np.cumsum(np.bitwise_count(text.reshape(rows, -1)).sum(axis=1), out=offsets[1:])
    data = pc.filter(pa.array(flat), pa.BooleanArray.from_buffers(pa.bool_(), len(flat), [None, pa.py_buffer(text)]))
    values = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), data.buffers()[1])
    unusual = ~usual.all(axis=1)
    if not unusual.any():
        return values
    strings = pc.cast(pa.array(matrix[unusual].ravel()), pa.string())
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, len(strings) + 1, dims, dtype=np.int32)), strings)
    return pc.replace_with_mask(
        values, pa.array(unusual), pc.binary_join_element_wise(pc.binary_join(lists, ","), "]", "")
    )


def _ascii_digits(width: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``width`` ASCII digits of 0 .. 10**width - 1 as little-endian integers: as written, and
    with the trailing zeros as zero bytes."""
    digits = np.arange(10**width)[:, None] // 10 ** np.arange(width - 1, -1, -1) % 10
    written = (digits + ord("0")).astype(np.uint64) << np.arange(0, 8 * width, 8, dtype=np.uint64)
    significant = np.flip(np.cumsum(np.flip(digits, axis=1), axis=1) > 0, axis=1)
    return written.sum(axis=1, dtype=np.uint64), (written * significant).sum(axis=1, dtype=np.uint64)


_SLOT_ROWS = 256  # rows formatted at once (their slots take 4 MB at 1,024 dimensions)
_DIGITS3, _DIGITS3_TRIMMED = _ascii_digits(3)
_DIGITS4_TRIMMED = _ascii_digits(4)[1]
# "[-]0.<zeros>" in the first 8 bytes of a slot, by 6 * negative + zeros; the last byte is "," or "]"
_VALUE_PREFIXES = np.array(
    [int.from_bytes(f"{sign}0.{'0' * zeros}".encode(), "little") for sign in ("", "-") for zeros in range(6)],
    np.uint64,
)
_SEPARATOR, _CLOSE = np.uint64(ord(",") << 56), np.uint64(ord("]") << 56)


def _embedding_matrix(seeds: list[int], dims: int, normalize: bool) -> np.ndarray:
    matrix = np.empty((len(seeds), dims), dtype=np.float64)
    for i, seed in enumerate(seeds):
        matrix[i] = np.random.default_rng(seed).standard_normal(dims)
    if normalize:
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    else:
        matrix *= 0.05
    return round_significant(matrix)


def _titan_outputs(family: str, bodies: list[dict], seeds: list[int]) -> list[SyntheticResult]:
    """Titan Text Embeddings V2 (``embedding``, ``embeddingsByType``) or V1 (1,536 values, ``embedding`` only)."""
    v1 = family == TITAN_EMBED_V1
    results: list[SyntheticResult | None] = [None] * len(bodies)
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, body in enumerate(bodies):
        key = (
            (TITAN_V1_DIMENSIONS, False)
            if v1
            else (int(body.get("dimensions", 1024)), bool(body.get("normalize", True)))
        )
        groups.setdefault(key, []).append(i)
    for (dims, normalize), idxs in groups.items():
        vectors = format_vectors(_embedding_matrix([seeds[i] for i in idxs], dims, normalize))
        for i, vec in zip(idxs, vectors):
            n_in = _tokens(len(bodies[i]["inputText"]))
            results[i] = SyntheticResult(_titan_embedding(vec, str(n_in), v1), None, n_in, 0)
    return results  # type: ignore[return-value]


def _titan_embedding(vector: str, n_in: str, v1: bool) -> str:
    """The Titan embedding response around a vector's JSON text."""
    by_type = "" if v1 else f'"embeddingsByType":{{"float":{vector}}},'
    return f'{{"embedding":{vector},{by_type}"inputTextTokenCount":{n_in}}}'


def _cohere_outputs(family: str, bodies: list[dict], seeds: list[int]) -> list[SyntheticResult]:
    """Cohere Embed v3: ``embeddings`` as a list of vectors, or by type when ``embedding_types`` is given."""
    text_seeds = [seed + j for body, seed in zip(bodies, seeds) for j in range(len(body["texts"]))]
    matrix = _embedding_matrix(text_seeds, COHERE_DIMENSIONS, True)
    floats = format_vectors(matrix)
    results, pos = [], 0
    for body, seed in zip(bodies, seeds):
        texts, rows = body["texts"], slice(pos, pos + len(body["texts"]))
        pos = rows.stop
        if "embedding_types" in body:
            by_type = {t: _quantized(matrix[rows], t) for t in dict.fromkeys(body["embedding_types"]) if t != "float"}
            parts = [f'"{t}":{json.dumps(v, separators=(",", ":"))}' for t, v in by_type.items()]
            if "float" in body["embedding_types"]:
                parts.insert(0, f'"float":[{",".join(floats[rows])}]')
            response_type, embeddings = "embeddings_by_type", "{" + ",".join(parts) + "}"
        else:
            response_type, embeddings = "embeddings_floats", f"[{','.join(floats[rows])}]"
        n_in = _tokens(sum(len(t) for t in texts))
        out = (
            f'{{"id":"emulated-{seed:016x}","response_type":"{response_type}","embeddings":{embeddings},'
            f'"texts":{json.dumps(texts, ensure_ascii=False)}}}'
        )
        results.append(SyntheticResult(out, None, n_in, 0))
    return results


def _quantized(vectors: np.ndarray, kind: str) -> list[list[int]]:
    """Cohere's integer embedding types: int8 / uint8 per value, binary / ubinary as packed sign bits."""
    if kind in ("int8", "uint8"):
        values = np.clip(np.round(vectors * 127 / np.abs(vectors).max(axis=1, keepdims=True)), -128, 127)
        return (values + (128 if kind == "uint8" else 0)).astype(int).tolist()
    packed = np.packbits(vectors > 0, axis=1).astype(int)
    return (packed - 128 if kind == "binary" else packed).tolist()


_EMBEDDERS = {TITAN_EMBED_V2: _titan_outputs, TITAN_EMBED_V1: _titan_outputs, COHERE_EMBED: _cohere_outputs}


def _embedding_texts(family: str, body: dict) -> list[str]:
    return body["texts"] if family == COHERE_EMBED else [body["inputText"]]


def _prompt_chars(body: dict) -> int:
    chars = len(
        _text_of_content(body.get("system")) if isinstance(body.get("system"), list) else str(body.get("system") or "")
    )
    for msg in body.get("messages") or []:
        if isinstance(msg, dict):
            chars += len(_text_of_content(msg.get("content")))
    return chars + len(str(body.get("prompt") or ""))


def structured_answer(schema: dict, seed: int) -> dict:
    """A deterministic answer that matches an output schema (enum values, words, small numbers)."""
    rng = random.Random(seed)
    answer: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        if "enum" in prop:
            answer[name] = rng.choice(prop["enum"])
        elif kind == "integer":
            answer[name] = rng.randint(1, 5)
        elif kind == "number":
            answer[name] = round(rng.random(), 3)
        elif kind == "boolean":
            answer[name] = rng.random() < 0.5
        elif kind == "array":
            answer[name] = rng.sample(_WORDS, 2)
        else:
            answer[name] = " ".join(rng.sample(_WORDS, 3))
    return answer


def _forced_tool(body: dict, invocation_type: str) -> tuple[str, dict] | None:
    """(tool name, input schema) when the request forces a tool (Claude tool_choice, Converse toolChoice)."""
    if invocation_type == "Converse":
        config = body.get("toolConfig") or {}
        name = ((config.get("toolChoice") or {}).get("tool") or {}).get("name")
        specs = [t.get("toolSpec") or {} for t in config.get("tools") or []]
        schema = next(((s.get("inputSchema") or {}).get("json") for s in specs if s.get("name") == name), None)
    else:
        choice = body.get("tool_choice") or {}
        name = choice.get("name") if choice.get("type") == "tool" else None
        schema = next((t.get("input_schema") for t in body.get("tools") or [] if t.get("name") == name), None)
    return (name, schema) if name and isinstance(schema, dict) else None


def _tool_output(invocation_type: str, model_id: str, tool: tuple[str, dict], seed: int, n_in: int) -> SyntheticResult:
    """The model calls the forced tool with an answer that matches its schema."""
    name, schema = tool
    answer = structured_answer(schema, seed)
    n_out = _tokens(len(json.dumps(answer)))
    if invocation_type == "Converse":
        block = {"toolUse": {"toolUseId": f"tooluse_emulated_{seed:016x}", "name": name, "input": answer}}
        out: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [block]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out},
            "metrics": {"latencyMs": 0},
        }
    else:
        block = {"type": "tool_use", "id": f"toolu_emulated_{seed:016x}", "name": name, "input": answer}
        out = _claude_message(model_id, f"{seed:016x}", block, "tool_use", n_in, n_out)
    return SyntheticResult(json.dumps(out, separators=(",", ":")), None, n_in, n_out)


def _claude_message(model_id: str, seed_hex: str, block: dict, stop_reason: str, n_in: Any, n_out: Any) -> dict:
    """Claude's Messages API response with one content block."""
    return {
        "id": f"msg_emulated_{seed_hex}",
        "type": "message",
        "role": "assistant",
        "model": model_id,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": n_in, "output_tokens": n_out},
    }


def _json_asked_in_prompt(body: dict) -> dict | None:
    """The schema a prompt asks the answer to match (the emulated model follows the instruction), if any."""
    text = str(body.get("prompt") or "") + "".join(
        _text_of_content(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)
    )
    _, found, rest = text.rpartition(JSON_INSTRUCTION)
    if not found:
        return None
    try:
        schema, _ = json.JSONDecoder().raw_decode(rest.strip())
    except json.JSONDecodeError:
        return None
    return schema if isinstance(schema, dict) else None


def _text_output(
    family: str, invocation_type: str, model_id: str, body: dict, seed: int, context: int | None
) -> SyntheticResult:
    """The family's documented response; token counts where the model returns them (all but Mistral)."""
    n_in = _tokens(_prompt_chars(body))
    if context is not None and n_in > context:
        return SyntheticResult(None, INPUT_TOO_LONG)
    tool = _forced_tool(body, invocation_type)
    if tool is not None:
        return _tool_output(invocation_type, model_id, tool, seed, n_in)
    asked = _json_asked_in_prompt(body)

    def say(max_tokens: int | None) -> tuple[str, bool]:
        """The reply: the JSON answer the prompt asks for, else emulated prose."""
        if asked is not None:
            return json.dumps(structured_answer(asked, seed)), False
        return _emulated_text(seed, model_id, max_tokens)

    if invocation_type == "Converse" or family in (NOVA, GENERIC):
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
        text, cut = say(max_tokens)
        n_out = _tokens(len(text))
        out = {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "max_tokens" if cut else "end_turn",
            "usage": {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out},
        }
        if invocation_type == "Converse" or family == GENERIC:  # Nova's InvokeModel response has no metrics
            out["metrics"] = {"latencyMs": 0}
    elif family == CLAUDE:
        text, cut = say(body.get("max_tokens"))
        n_out = _tokens(len(text))
        block = {"type": "text", "text": text}
        out = _claude_message(model_id, f"{seed:016x}", block, "max_tokens" if cut else "end_turn", n_in, n_out)
    elif family == LLAMA:
        text, cut = say(body.get("max_gen_len"))
        n_out = _tokens(len(text))
        out = {
            "generation": text,
            "prompt_token_count": n_in,
            "generation_token_count": n_out,
            "stop_reason": "length" if cut else "stop",
        }
    elif family == MISTRAL:
        text, cut = say(body.get("max_tokens"))
        n_out = _tokens(len(text))
        out = {"outputs": [{"text": text, "stop_reason": "length" if cut else "stop"}]}
    else:  # MISTRAL_CHAT
        text, cut = say(body.get("max_tokens"))
        n_out = _tokens(len(text))
        message = {"role": "assistant", "content": text}
        out = {"choices": [{"index": 0, "message": message, "stop_reason": "length" if cut else "stop"}]}
    return SyntheticResult(json.dumps(out, separators=(",", ":")), None, n_in, n_out)


def synthesize_batch(model_id: str, invocation_type: str, model_inputs: list[Any]) -> list[SyntheticResult]:
    """Validate and answer a batch of records, returning one SyntheticResult per input.

    Embedding records are answered together (one vectorized call per family); text records one by one.
    """
    info = lookup(model_id)
    family = (info.family if info else None) or GENERIC
    context = info.context_tokens if info else None
    max_chars = info.max_input_chars if info else None
    embedder = _EMBEDDERS.get(family) if invocation_type != "Converse" else None
    results: list[SyntheticResult | None] = [None] * len(model_inputs)
    embed_idx: list[int] = []
    seeds = [0] * len(model_inputs)
    for i, body in enumerate(model_inputs):
        try:
            validate_record(family, invocation_type, body)
        except RecordValidationError as exc:
            results[i] = SyntheticResult(None, f"Malformed input request: {exc}")
            continue
        if embedder and max_chars is not None and any(len(t) > max_chars for t in _embedding_texts(family, body)):
            results[i] = SyntheticResult(None, INPUT_TOO_LONG)
            continue
        seeds[i] = input_seed(body)
        if embedder:
            embed_idx.append(i)
        else:
            results[i] = _text_output(family, invocation_type, model_id, body, seeds[i], context)
    if embed_idx:
        answers = embedder(family, [model_inputs[i] for i in embed_idx], [seeds[i] for i in embed_idx])  # type: ignore[misc]
        for i, res in zip(embed_idx, answers):
            results[i] = res
    return results  # type: ignore[return-value]


# --- bulk answers: the common body shapes, column-wise ------------------------------------------
#
# A batch job's bodies are mostly rendered by one program, so most share one compact layout. Those
# in one of their family's layouts (_BULK) are answered with Arrow and numpy, byte for byte as
# synthesize_batch answers them; synthesize_batch answers the others.

# a JSON string's content as json.dumps(ensure_ascii=False) writes it, with no \u escape
_JSON_TEXT = r'[^"\\\x00-\x1f]*(?:\\["\\bfnrt][^"\\\x00-\x1f]*)*'
_POSITIVE_INT = "[1-9][0-9]{0,15}"
_MARK = re.compile(r'"@@#(\w+)@@"|@@(\w+)@@')
_WHITESPACE = "".join(filter(str.isspace, map(chr, range(0x3001))))  # U+3000 is the last one
# a character that is neither whitespace nor part of an escape: the text is not blank
_NOT_BLANK = r"(?:^|[^\\])[^\\" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE) + "]"
_JSON_ASK = json.dumps(JSON_INSTRUCTION, ensure_ascii=False)[1:-1]
_SPAN = _MAX_WORDS - _MIN_WORDS + 1  # randint(_MIN_WORDS, _MAX_WORDS) is _MIN_WORDS + randbelow(_SPAN)
_DRAWS = 80  # generator outputs replayed per text: enough for all but ~1 in 10,000 (done one by one)
_WORD_ARRAY = pa.array(_WORDS)
_WORD_LENGTHS = np.array([len(word) for word in _WORDS])


# (keep, outputs, input tokens, output tokens) of a family's bulk answers: the bodies not kept are left
# to synthesize_batch, a null output is the INPUT_TOO_LONG error
FamilyAnswers = tuple[np.ndarray, pa.Array, np.ndarray, np.ndarray]


class _Layout:
    """JSON text as literal text around fields, from a marked sample.

    A field is marked by a string value: ``"@@name@@"`` (the field is the string's content) or
    ``"@@#name@@"`` (the field is a bare value: a number or a boolean).
    """

    def __init__(self, marked: str) -> None:
        pieces = _MARK.split(marked)
        self.literals: list[str] = pieces[::3]
        self.fields: list[str] = [raw or text for raw, text in zip(pieces[1::3], pieces[2::3])]

    @classmethod
    def of(cls, sample: Any, *, sort_keys: bool = False, ensure_ascii: bool = True) -> _Layout:
        return cls(json.dumps(sample, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=ensure_ascii))

    def render(self, values: dict[str, Any]) -> pa.Array:
        """The text of each row, given each field's values (an array, or a scalar for all rows)."""
        parts: list[Any] = [self.literals[0]]
        for name, literal in zip(self.fields, self.literals[1:]):
            parts += [values[name], literal]
        return pc.binary_join_element_wise(*parts, "")


class _BodyShape:
    """A compact body layout (keys in the renderer's order) whose bodies ``answer`` answers in bulk."""

    def __init__(self, sample: dict[str, Any], values: dict[str, str], answer: Callable[..., FamilyAnswers]) -> None:
        self.answer = answer
        self.layout = _Layout.of(sample, ensure_ascii=False)
        self.sorted = _Layout.of(sample, sort_keys=True, ensure_ascii=False)  # as input_seed writes it
        parts = [re.escape(self.layout.literals[0])]
        for name, literal in zip(self.layout.fields, self.layout.literals[1:]):
            parts += [f"(?:{values.get(name, _JSON_TEXT)})", re.escape(literal)]
        self.pattern = "^" + "".join(parts) + "$"
        self.texts = [name for name in self.layout.fields if name not in values]

    def matches(self, bodies: pa.Array) -> np.ndarray:
        """Which bodies are of this shape (the pattern runs on those that end like it)."""
        matched = _numpy(pc.ends_with(bodies, self.layout.literals[-1]))
        rows = np.flatnonzero(matched)
        matched[rows] = _numpy(pc.match_substring_regex(bodies.take(rows), self.pattern))
        return matched

    def cut(self, bodies: pa.Array) -> dict[str, pa.Array]:
        """Each field's text in bodies of this shape.

        A field ends where the literal after it first occurs: a bare value cannot hold it, nor can an
        escaped string, where every quote follows a backslash (each literal after a string has a
        quote past its first character that follows none, and no overlap with itself).
        """
        rest = pc.utf8_slice_codeunits(bodies, len(self.layout.literals[0]))
        fields = {}
        *inner, last = self.layout.fields
        for name, literal in zip(inner, self.layout.literals[1:]):
            halves = pc.split_pattern(rest, literal, max_splits=1)
            fields[name], rest = pc.list_element(halves, 0), pc.list_element(halves, 1)
        fields[last] = pc.utf8_slice_codeunits(rest, 0, -len(self.layout.literals[-1]))
        return fields

    def text_lengths(self, bodies: pa.Array, fields: dict[str, pa.Array]) -> np.ndarray:
        """Characters in the string fields of each body, decoded (only their escapes hold backslashes)."""
        return sum(_numpy(pc.utf8_length(fields[name])) for name in self.texts) - _escapes(bodies)


@dataclass(frozen=True)
class BulkAnswers:
    """synthesize_batch's results for the bodies at ``rows``, column-wise.

    ``outputs`` holds each modelOutput's JSON, or null where the result is the INPUT_TOO_LONG error.
    """

    rows: np.ndarray
    outputs: pa.Array
    input_tokens: np.ndarray
    output_tokens: np.ndarray


def _numpy(values: pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False)


def _token_counts(chars: np.ndarray) -> np.ndarray:
    return np.maximum(1, (chars + 3) // 4)


def _escapes(texts: pa.Array) -> np.ndarray:
    """Escape sequences in each (JSON, no \\u) text: ceil(k / 2) in a run of k backslashes."""
    offsets = np.frombuffer(texts.buffers()[1], np.int32, len(texts) + 1, 4 * texts.offset)
    data = np.frombuffer(texts.buffers()[2], np.uint8, offsets[-1] - offsets[0], offsets[0])
    at = np.flatnonzero(data == ord("\\")) + offsets[0]
    starts = np.flatnonzero(np.diff(at, prepend=-2) != 1)
    runs = np.diff(starts, append=len(at))
    rows = np.searchsorted(offsets, at[starts], side="right") - 1
    return np.bincount(rows, (runs + 1) // 2, len(texts)).astype(np.int64)


def _contains(texts: pa.Array, literal: str) -> np.ndarray:
    """Which texts contain ``literal`` (looked for in all of them at once first)."""
    data = texts.buffers()[2]
    if data is None or re.search(re.escape(literal.encode()), memoryview(data)) is None:
        return np.zeros(len(texts), bool)
    return _numpy(pc.match_substring(texts, literal))


def _seeds(sorted_bodies: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Each body's input_seed (given its json.dumps(sort_keys=True) text) and the seed's 16 hex digits."""
    digests = [hashlib.sha256(body).digest()[:8] for body in sorted_bodies.cast(pa.binary()).to_pylist()]
    return np.frombuffer(b"".join(digests), ">u8").astype(np.uint64), [digest.hex() for digest in digests]


def _emulated_texts(
    seeds: np.ndarray, model_id: str, max_tokens: np.ndarray
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """_emulated_text for each seed: (the text JSON-escaped, its length, whether max_tokens cut it).

    Replays what random.Random(seed) does for randint and choice: randbelow(n) takes the top
    n.bit_length() bits of each next 32-bit output until they are below n. A text that max_tokens
    cuts, or that needs more than _DRAWS outputs, comes from _emulated_text itself.
    """
    rng, stream = random.Random(), bytearray()
    reseed = super(random.Random, rng).seed  # what random.Random(seed) does, without Random.seed's checks
    for seed in seeds.tolist():
        reseed(seed)
        stream += rng.getrandbits(32 * _DRAWS).to_bytes(4 * _DRAWS, "little")
    draws = np.frombuffer(stream, "<u4").reshape(len(seeds), _DRAWS)
    rows = np.arange(len(seeds))
    spans = draws >> np.uint32(32 - _SPAN.bit_length())
    first = np.argmax(spans < _SPAN, axis=1)
    counts = _MIN_WORDS + spans[rows, first].astype(np.int64)
    picks = draws >> np.uint32(32 - len(_WORDS).bit_length())
    chosen = (picks < len(_WORDS)) & (np.arange(_DRAWS) > first[:, None])
    rank = np.cumsum(chosen, axis=1, dtype=np.int16)
    replayed = (spans[rows, first] < _SPAN) & (rank[:, -1] >= counts)
    counts[~replayed] = 0
    words = picks[chosen & (rank <= counts[:, None])]
    prefix = f"[emulated] {model_id}: "
    lengths = (
        len(prefix) + counts + np.bincount(np.repeat(rows, counts), _WORD_LENGTHS[words], len(seeds)).astype(np.int64)
    )
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
    sentences = pc.binary_join(pa.ListArray.from_arrays(offsets, _WORD_ARRAY.take(pa.array(words))), " ")
    texts = pc.binary_join_element_wise(json.dumps(prefix)[1:-1], sentences, ".", "")
    cut = _token_counts(lengths) > max_tokens
    redo = ~replayed | cut
    if redo.any():
        again = [
            _emulated_text(seed, model_id, limit)
            for seed, limit in zip(seeds[redo].tolist(), max_tokens[redo].tolist())
        ]
        texts = pc.replace_with_mask(texts, pa.array(redo), pa.array([json.dumps(text)[1:-1] for text, _ in again]))
        lengths[redo] = [len(text) for text, _ in again]
        cut[redo] = [was_cut for _, was_cut in again]
    return texts, lengths, cut


def _claude_bulk(
    model_id: str, info: ModelInfo, fields: dict[str, pa.Array], chars: np.ndarray, seeds: np.ndarray, hexes: list[str]
) -> FamilyAnswers:
    """Claude text answers; a prompt that asks for JSON is left to synthesize_batch."""
    n_in = _token_counts(chars)
    texts, lengths, cut = _emulated_texts(seeds, model_id, _numpy(pc.cast(fields["max_tokens"], pa.int64())))
    n_out = _token_counts(lengths)
    block = {"type": "text", "text": "@@text@@"}
    layout = _Layout.of(_claude_message(model_id, "@@id@@", block, "@@stop@@", "@@#n_in@@", "@@#n_out@@"))
    stop = pc.if_else(pa.array(cut), "max_tokens", "end_turn")
    outputs = layout.render(
        {"id": pa.array(hexes), "text": texts, "stop": stop, "n_in": _texts(n_in), "n_out": _texts(n_out)}
    )
    too_long = n_in > info.context_tokens if info.context_tokens is not None else np.zeros(len(n_in), bool)
    return ~_contains(fields["text"], _JSON_ASK), _null_where(outputs, too_long), n_in, n_out


def _titan_bulk(
    model_id: str, info: ModelInfo, fields: dict[str, pa.Array], chars: np.ndarray, seeds: np.ndarray, hexes: list[str]
) -> FamilyAnswers:
    """Titan Text Embeddings V2 answers; a text that may be blank is left to synthesize_batch."""
    dims = _numpy(pc.cast(fields["dimensions"], pa.int64()))
    normalize = _numpy(pc.equal(fields["normalize"], "true"))
    kinds = sorted(set(zip(dims.tolist(), normalize.tolist())))
    groups = [np.flatnonzero((dims == d) & (normalize == n)) for d, n in kinds]
    vectors = pa.concat_arrays(
        [vector_values(_embedding_matrix(seeds[rows].tolist(), d, n)) for rows, (d, n) in zip(groups, kinds)]
    )
    if len(groups) > 1:
        vectors = vectors.take(pa.array(np.argsort(np.concatenate(groups))))
    n_in = _token_counts(chars)
    layout = _Layout(_titan_embedding("[@@vector@@", "@@n_in@@", v1=False))
    outputs = _null_where(layout.render({"vector": vectors, "n_in": _texts(n_in)}), chars > info.max_input_chars)
    return _numpy(pc.match_substring_regex(fields["inputText"], _NOT_BLANK)), outputs, n_in, np.zeros_like(n_in)


def _texts(numbers: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(numbers), pa.string())


def _null_where(values: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


_CLAUDE_SAMPLE = {
    "anthropic_version": CLAUDE_VERSION,
    "max_tokens": "@@#max_tokens@@",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "@@text@@"}]}],
}
_TITAN_SAMPLE = {"inputText": "@@inputText@@", "dimensions": "@@#dimensions@@", "normalize": "@@#normalize@@"}
_BULK_SHAPES = {
    CLAUDE: [
        _BodyShape(sample, {"max_tokens": _POSITIVE_INT}, _claude_bulk)
        for sample in (_CLAUDE_SAMPLE, {**_CLAUDE_SAMPLE, "system": "@@system@@"})
    ],
    TITAN_EMBED_V2: [
        _BodyShape(
            _TITAN_SAMPLE, {"dimensions": "|".join(map(str, TITAN_DIMENSIONS)), "normalize": "true|false"}, _titan_bulk
        )
    ],
}


def _bulk_shapes(info: ModelInfo | None, invocation_type: str) -> list[_BodyShape]:
    """The bulk shapes of the model's family (none but for InvokeModel)."""
    return _BULK_SHAPES.get(info.family or "", []) if info and invocation_type == "InvokeModel" else []


def in_bulk_shape(model_id: str, invocation_type: str, bodies: pa.Array) -> np.ndarray:
    """Which bodies (compact JSON texts) are in one of the model's bulk shapes: valid JSON objects."""
    matched = np.zeros(len(bodies), bool)
    for shape in _bulk_shapes(lookup(model_id), invocation_type):
        matched |= shape.matches(bodies)
    return matched


def synthesize_bulk(model_id: str, invocation_type: str, bodies: pa.Array) -> BulkAnswers:
    """synthesize_batch for the bodies in a bulk shape, given as compact JSON texts (ensure_ascii=False)."""
    info = lookup(model_id)
    parts = []
    for shape in _bulk_shapes(info, invocation_type):  # each body is of one shape at most
        rows = np.flatnonzero(shape.matches(bodies))
        if len(rows):
            shaped = bodies.take(rows)
            fields = shape.cut(shaped)
            chars = shape.text_lengths(shaped, fields)
            keep, outputs, n_in, n_out = shape.answer(
                model_id, info, fields, chars, *_seeds(shape.sorted.render(fields))
            )
            parts.append((rows[keep], outputs.filter(pa.array(keep)), n_in[keep], n_out[keep]))
    if not parts:
        return BulkAnswers(
            np.zeros(0, np.intp), pa.array([], pa.string()), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
    rows, outputs, n_in, n_out = zip(*parts)
    return BulkAnswers(np.concatenate(rows), pa.concat_arrays(outputs), np.concatenate(n_in), np.concatenate(n_out))
