"""Deterministic synthetic model outputs for the Bedrock batch emulator (and its runtime API), record by record.

Every output is clearly marked as emulated (texts start with ``[emulated]``, Claude ids with
``msg_emulated_``) and is seeded by a hash of the record's ``modelInput``, so reruns give identical
results. A record is first checked as Bedrock checks it (``validation``); one that fails gets an
error line instead of a model output. Outputs follow each family's documented InvokeModel
response, with token counts where the model returns them (not Mistral's or Cohere's: the manifest
still counts them).

Input size limits: a record too large for its model gets ``INPUT_TOO_LONG`` instead. Embedding
models have documented character limits (Titan Text Embeddings V2: 50,000 characters of
``inputText``; Cohere Embed: 2,048 per text). Text models are checked against their context window
(``catalog.ModelInfo.context_tokens``) with the emulator's own token estimate: one token per 4
characters, rounded up, of the prompt text (system text, every message's text blocks, ``prompt``).

Batch jobs answer the records whose bodies have their family's usual compact layout in bulk
(``bulk.synthesize_bulk``), byte for byte as ``synthesize_batch`` answers them here.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from bedrock_assets.output_schema import JSON_INSTRUCTION

from .catalog import CLAUDE, COHERE_EMBED, GENERIC, LLAMA, MISTRAL, NOVA, TITAN_EMBED_V1, TITAN_EMBED_V2, lookup
from .validation import RecordContext, RecordValidationError, validate_record
from .vectors import format_vectors, round_significant

TITAN_V1_DIMENSIONS = 1536
COHERE_DIMENSIONS = 1024
INPUT_TOO_LONG = "Input is too long for requested model."
MIN_WORDS, MAX_WORDS = 8, 40  # words in an emulated text
WORDS = (
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


def emulated_text(seed: int, model_id: str, max_tokens: int | None) -> tuple[str, bool]:
    """Deterministic marked text; returns (text, truncated_by_max_tokens)."""
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(rng.randint(MIN_WORDS, MAX_WORDS))]
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


def embedding_matrix(seeds: list[int], dims: int, normalize: bool) -> np.ndarray:
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
        vectors = format_vectors(embedding_matrix([seeds[i] for i in idxs], dims, normalize))
        for i, vec in zip(idxs, vectors):
            n_in = _tokens(len(bodies[i]["inputText"]))
            results[i] = SyntheticResult(titan_embedding(vec, str(n_in), v1), None, n_in, 0)
    return results  # type: ignore[return-value]


def titan_embedding(vector: str, n_in: str, v1: bool) -> str:
    """The Titan embedding response around a vector's JSON text."""
    by_type = "" if v1 else f'"embeddingsByType":{{"float":{vector}}},'
    return f'{{"embedding":{vector},{by_type}"inputTextTokenCount":{n_in}}}'


def _cohere_outputs(family: str, bodies: list[dict], seeds: list[int]) -> list[SyntheticResult]:
    """Cohere Embed v3: ``embeddings`` as a list of vectors, or by type when ``embedding_types`` is given."""
    text_seeds = [seed + j for body, seed in zip(bodies, seeds) for j in range(len(body["texts"]))]
    matrix = embedding_matrix(text_seeds, COHERE_DIMENSIONS, True)
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
            answer[name] = rng.sample(WORDS, 2)
        else:
            answer[name] = " ".join(rng.sample(WORDS, 3))
    return answer


def _forced_tool(body: dict, invocation_type: str) -> tuple[str, dict] | None:
    """(tool name, input schema) when the request forces a tool (Claude tool_choice; toolChoice in the Converse
    shape, which Nova's InvokeModel body shares)."""
    if invocation_type == "Converse" or "toolConfig" in body:
        config = body.get("toolConfig") or {}
        name = ((config.get("toolChoice") or {}).get("tool") or {}).get("name")
        specs = [t.get("toolSpec") or {} for t in config.get("tools") or []]
        schema = next(((s.get("inputSchema") or {}).get("json") for s in specs if s.get("name") == name), None)
    else:
        choice = body.get("tool_choice") or {}
        name = choice.get("name") if choice.get("type") == "tool" else None
        schema = next((t.get("input_schema") for t in body.get("tools") or [] if t.get("name") == name), None)
    return (name, schema) if name and isinstance(schema, dict) else None


def _tool_output(
    family: str, invocation_type: str, model_id: str, tool: tuple[str, dict], seed: int, n_in: int
) -> SyntheticResult:
    """The model calls the forced tool with an answer that matches its schema (in the Converse shape, which
    Nova's InvokeModel response shares, or in Claude's)."""
    name, schema = tool
    answer = structured_answer(schema, seed)
    n_out = _tokens(len(json.dumps(answer)))
    block: dict[str, Any]
    if invocation_type == "Converse" or family == NOVA:
        block = {"toolUse": {"toolUseId": f"tooluse_emulated_{seed:016x}", "name": name, "input": answer}}
        out: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [block]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out},
        }
        if invocation_type == "Converse":  # Nova's InvokeModel response has no metrics
            out["metrics"] = {"latencyMs": 0}
    else:
        block = {"type": "tool_use", "id": f"toolu_emulated_{seed:016x}", "name": name, "input": answer}
        out = claude_message(model_id, f"{seed:016x}", block, "tool_use", n_in, n_out)
    return SyntheticResult(json.dumps(out, separators=(",", ":")), None, n_in, n_out)


def claude_message(model_id: str, seed_hex: str, block: dict, stop_reason: str, n_in: Any, n_out: Any) -> dict:
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


def _json_asked(body: dict) -> dict | None:
    """The schema the answer must match: a JSON schema output format (Claude's ``output_config``, Converse's
    ``outputConfig``, already validated), else one the prompt asks for (the emulated model follows it)."""
    if "output_config" in body:
        return body["output_config"]["format"]["schema"]
    text_format = (body.get("outputConfig") or {}).get("textFormat")
    if text_format is not None:
        return json.loads(text_format["structure"]["jsonSchema"]["schema"])
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
        return _tool_output(family, invocation_type, model_id, tool, seed, n_in)
    asked = _json_asked(body)

    def say(max_tokens: int | None) -> tuple[str, bool]:
        """The reply: the JSON answer asked for, else emulated prose; either cut off at max_tokens."""
        if asked is None:
            return emulated_text(seed, model_id, max_tokens)
        text = json.dumps(structured_answer(asked, seed))
        if max_tokens is not None and _tokens(len(text)) > max_tokens:
            return text[: max(1, max_tokens * 4)], True
        return text, False

    out: dict[str, Any]
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
        out = claude_message(model_id, f"{seed:016x}", block, "max_tokens" if cut else "end_turn", n_in, n_out)
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


def synthesize_batch(
    model_id: str, invocation_type: str, model_inputs: list[Any], batch: bool = True
) -> list[SyntheticResult]:
    """Validate and answer a batch of records, returning one SyntheticResult per input (``batch=False``: the
    bodies of runtime calls, which may use tools in the Converse shape).

    Embedding records are answered together (one vectorized call per family); text records one by one.
    """
    info = lookup(model_id)
    record = RecordContext(info.structured_outputs if info else False, batch)
    family = (info.family if info else None) or GENERIC
    context = info.context_tokens if info else None
    max_chars = info.max_input_chars if info else None
    embedder = _EMBEDDERS.get(family) if invocation_type != "Converse" else None
    results: list[SyntheticResult | None] = [None] * len(model_inputs)
    embed_idx: list[int] = []
    seeds = [0] * len(model_inputs)
    for i, body in enumerate(model_inputs):
        try:
            validate_record(family, invocation_type, body, record)
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
