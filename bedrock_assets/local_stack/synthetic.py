"""Deterministic synthetic model outputs for the Bedrock batch emulator (and its runtime API).

Every output is clearly marked as emulated (texts start with ``[emulated]``, Claude ids with
``msg_emulated_``) and is seeded by a hash of the record's ``modelInput``, so reruns give identical
results. Per-record request validation mirrors what Bedrock checks at run time; a record that fails
it gets an error line (errorCode 400) instead of a model output.

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

from .catalog import lookup

CLAUDE_VERSION = "bedrock-2023-05-31"
TITAN_DIMENSIONS = (256, 512, 1024)
INPUT_TOO_LONG = "Input is too long for requested model."
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


def _validate_titan_v2(body: dict) -> None:
    text = body.get("inputText")
    _require(isinstance(text, str) and text.strip() != "", "inputText: required non-empty string")
    extra = set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"}
    _require(not extra, f"extraneous key(s) {sorted(extra)} are not permitted")
    if "dimensions" in body:
        _require(
            body["dimensions"] in TITAN_DIMENSIONS and _is_int(body["dimensions"]),
            f"dimensions: must be one of {list(TITAN_DIMENSIONS)}",
        )
    if "normalize" in body:
        _require(isinstance(body["normalize"], bool), "normalize: must be a boolean")


def _validate_converse(body: dict) -> None:
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
        extra = set(cfg) - {"maxTokens", "temperature", "topP", "stopSequences"}
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
    extra = set(body) - {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}
    _require(not extra, f"extraneous key(s) {sorted(extra)} are not permitted in a Converse request")


def _validate_generic(family: str, body: dict) -> None:
    if family == "nova":
        messages = body.get("messages")
        _require(isinstance(messages, list) and len(messages) > 0, "messages: must be a non-empty list")
    elif family in ("llama", "mistral"):
        _require(isinstance(body.get("prompt"), str) and body["prompt"] != "", "prompt: required non-empty string")
    elif family == "cohere-embed":
        texts = body.get("texts")
        _require(
            isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts),
            "texts: must be a non-empty list of strings",
        )


def validate_record(family: str, invocation_type: str, model_input: Any) -> None:
    """Raise RecordValidationError when a record's modelInput would be rejected by Bedrock."""
    _require(isinstance(model_input, dict), "modelInput: must be a JSON object")
    _require("modelId" not in model_input, "modelInput: key 'modelId' is not permitted in a batch record")
    if invocation_type == "Converse":
        _validate_converse(model_input)
    elif family == "claude":
        _validate_claude(model_input)
    elif family == "titan-embed-v2":
        _validate_titan_v2(model_input)
    else:
        _validate_generic(family, model_input)


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


def _titan_outputs(bodies: list[dict], seeds: list[int]) -> list[SyntheticResult]:
    results: list[SyntheticResult | None] = [None] * len(bodies)
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, body in enumerate(bodies):
        key = (int(body.get("dimensions", 1024)), bool(body.get("normalize", True)))
        groups.setdefault(key, []).append(i)
    for (dims, normalize), idxs in groups.items():
        vectors = format_vectors(_embedding_matrix([seeds[i] for i in idxs], dims, normalize))
        for i, vec in zip(idxs, vectors):
            n_in = _tokens(len(bodies[i]["inputText"]))
            out = f'{{"embedding":{vec},"embeddingsByType":{{"float":{vec}}},"inputTextTokenCount":{n_in}}}'
            results[i] = SyntheticResult(out, None, n_in, 0)
    return results  # type: ignore[return-value]


def _prompt_chars(body: dict) -> int:
    chars = len(
        _text_of_content(body.get("system")) if isinstance(body.get("system"), list) else str(body.get("system") or "")
    )
    for msg in body.get("messages") or []:
        if isinstance(msg, dict):
            chars += len(_text_of_content(msg.get("content")))
    return chars + len(str(body.get("prompt") or ""))


def _text_output(
    family: str, invocation_type: str, model_id: str, body: dict, seed: int, context: int | None
) -> SyntheticResult:
    n_in = _tokens(_prompt_chars(body))
    if context is not None and n_in > context:
        return SyntheticResult(None, INPUT_TOO_LONG)
    if invocation_type == "Converse" or family in ("nova", "generic"):
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
        text, cut = _emulated_text(seed, model_id, max_tokens)
        n_out = _tokens(len(text))
        out = {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "max_tokens" if cut else "end_turn",
            "usage": {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out},
            "metrics": {"latencyMs": 0},
        }
    elif family == "claude":
        text, cut = _emulated_text(seed, model_id, body.get("max_tokens"))
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
    elif family == "llama":
        text, cut = _emulated_text(seed, model_id, body.get("max_gen_len"))
        n_out = _tokens(len(text))
        out = {
            "generation": text,
            "prompt_token_count": n_in,
            "generation_token_count": n_out,
            "stop_reason": "length" if cut else "stop",
        }
    elif family == "mistral":
        text, cut = _emulated_text(seed, model_id, body.get("max_tokens"))
        n_out = _tokens(len(text))
        out = {"outputs": [{"text": text, "stop_reason": "length" if cut else "stop"}]}
    else:  # cohere-embed (character limits are checked by the caller)
        texts = body["texts"]
        rows = format_vectors(_embedding_matrix([seed + i for i in range(len(texts))], 1024, True))
        n_in = _tokens(sum(len(t) for t in texts))
        return SyntheticResult(
            f'{{"id":"emulated-{seed:016x}","response_type":"embeddings_floats",'
            f'"embeddings":[{",".join(rows)}],"texts":{json.dumps(texts)}}}',
            None,
            n_in,
            0,
        )
    return SyntheticResult(json.dumps(out, separators=(",", ":")), None, n_in, n_out)


def synthesize_batch(model_id: str, invocation_type: str, model_inputs: list[Any]) -> list[SyntheticResult]:
    """Validate and answer a batch of records, returning one SyntheticResult per input."""
    info = lookup(model_id)
    family = (info.family if info else None) or "generic"
    context = info.context_tokens if info else None
    max_chars = info.max_input_chars if info else None
    results: list[SyntheticResult | None] = [None] * len(model_inputs)
    titan_idx: list[int] = []
    seeds = [0] * len(model_inputs)
    for i, body in enumerate(model_inputs):
        try:
            validate_record(family, invocation_type, body)
        except RecordValidationError as exc:
            results[i] = SyntheticResult(None, f"Malformed input request: {exc}")
            continue
        embedding = invocation_type != "Converse" and family in ("titan-embed-v2", "cohere-embed")
        if embedding and max_chars is not None:
            texts = [body["inputText"]] if family == "titan-embed-v2" else body["texts"]
            if any(len(t) > max_chars for t in texts):
                results[i] = SyntheticResult(None, INPUT_TOO_LONG)
                continue
        seeds[i] = input_seed(body)
        if embedding and family == "titan-embed-v2":
            titan_idx.append(i)
        else:
            results[i] = _text_output(family, invocation_type, model_id, body, seeds[i], context)
    if titan_idx:
        for i, res in zip(
            titan_idx, _titan_outputs([model_inputs[i] for i in titan_idx], [seeds[i] for i in titan_idx])
        ):
            results[i] = res
    return results  # type: ignore[return-value]
