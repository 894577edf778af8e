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
"""

from __future__ import annotations

import hashlib
import json
import random
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
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 40))]
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
    rows, dims = matrix.shape
    if rows == 0:
        return []
    strings = pc.cast(pa.array(np.ascontiguousarray(matrix, dtype=np.float64).ravel()), pa.string())
    offsets = pa.array(np.arange(0, rows * dims + 1, dims, dtype=np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, strings), ",")
    return ["[" + s + "]" for s in joined.to_pylist()]


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
            by_type = "" if v1 else f'"embeddingsByType":{{"float":{vec}}},'
            results[i] = SyntheticResult(f'{{"embedding":{vec},{by_type}"inputTextTokenCount":{n_in}}}', None, n_in, 0)
    return results  # type: ignore[return-value]


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
        out = {
            "id": f"msg_emulated_{seed:016x}",
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [{"type": "tool_use", "id": f"toolu_emulated_{seed:016x}", "name": name, "input": answer}],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }
    return SyntheticResult(json.dumps(out, separators=(",", ":")), None, n_in, n_out)


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
        out = {
            "id": f"msg_emulated_{seed:016x}",
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if cut else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }
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
