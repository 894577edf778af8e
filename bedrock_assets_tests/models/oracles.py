"""Oracles for the model adapters: one row rendered, and one body checked, the slow and obvious way.

The adapters build bodies (``body_for_text``) and render rows in Arrow; these check, record by record,
that a body has its family's documented shape with the row's text where it belongs, and refuse what
the family's InvokeModel schema does not take. Tests hold the vectorized code to them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from bedrock_assets.models import ModelAdapter
from bedrock_assets.models.base import EmbeddingAdapter, PromptStringAdapter
from bedrock_assets.models.claude import ANTHROPIC_VERSION
from bedrock_assets.models.cohere_embed import COHERE_INPUT_TYPES, COHERE_TRUNCATE, EMBEDDING_TYPES
from bedrock_assets.models.llama import LLAMA_MAX_GEN_LEN
from bedrock_assets.models.mistral import MISTRAL_MAX_STOP
from bedrock_assets.models.nova import NOVA_SCHEMA_VERSION
from bedrock_assets.models.titan_embed import TITAN_V2_DIMENSIONS

ROW = {"source": "What is 2+2?", "task": "arith"}  # the row the documented bodies are written for
# a model of each family
NOVA = "us.amazon.nova-lite-v1:0"
NOVA2 = "global.amazon.nova-2-lite-v1:0"
LLAMA3 = "meta.llama3-1-8b-instruct-v1:0"
LLAMA4 = "us.meta.llama4-maverick-17b-instruct-v1:0"
MISTRAL = "mistral.mistral-small-2402-v1:0"
MISTRAL_CHAT = "mistral.mistral-large-2407-v1:0"
COHERE = "cohere.embed-english-v3"
TITAN_V1 = "amazon.titan-embed-text-v1"
SCOUT = "us.meta.llama4-scout-17b-instruct-v1:0"


def text_for(adapter: ModelAdapter, row: Mapping[str, Any]) -> str:
    """A row's variable text: the template formatted with the row's values, or the input column's value."""
    if adapter.prompt.template is None:
        return _text(row[adapter.prompt.input_column or ""])
    text = adapter.prompt.template.format_map({c: _text(row[c]) for c in adapter.input_columns()})
    return text + adapter.asks_json_in_prompt


def build(adapter: ModelAdapter, row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``modelInput`` body for one row."""
    return adapter.body_for_text(text_for(adapter, row))


def validate(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    """ValueError naming the field when the body is not one the adapter's family takes for a row."""
    if "modelId" in body:
        raise ValueError("modelInput must not contain 'modelId' (Bedrock rejects it per record)")
    _VALIDATORS[adapter.family](adapter, body)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def check_keys(body: Mapping[str, Any], allowed: Collection[str], family: str) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise ValueError(f"{family} bodies take only {sorted(allowed)}; remove {extra}")


def check_number(body: Mapping[str, Any], key: str, low: float, high: float, integer: bool = False) -> None:
    if key not in body:
        return
    value = body[key]
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise ValueError(f"{key} must be {'an integer' if integer else 'a number'} in [{low:g}, {high:g}]")


def unwrap(adapter: PromptStringAdapter, prompt: Any) -> str:
    """The row's text inside a ``prompt``; ValueError unless it is the adapter's template around non-blank text."""
    before, after = adapter.prompt_frame()
    if not isinstance(prompt, str) or not prompt.startswith(before) or not prompt.endswith(after):
        raise ValueError(f"prompt must be a string in the {adapter.family} chat template")
    text = prompt[len(before) : len(prompt) - len(after)]
    if not text.strip():
        raise ValueError("prompt: the user turn has no text but whitespace (the rendered prompt is blank)")
    return text


def check_text(adapter: EmbeddingAdapter, text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{adapter.text_field} must be a non-empty string")
    if adapter.max_chars is not None and len(text) > adapter.max_chars:
        raise ValueError(
            f"{adapter.text_field} has {len(text)} characters; {adapter.model_id} accepts at most {adapter.max_chars}"
        )


def _claude(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    if body.get("anthropic_version") != ANTHROPIC_VERSION:
        raise ValueError(f"anthropic_version must be {ANTHROPIC_VERSION!r}")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
        raise ValueError("max_tokens must be a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            raise ValueError(f"messages[{i}].role must be 'user' or 'assistant'")
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [c.get("text") or "" for c in content or []]
        if not any(t.strip() for t in texts):
            raise ValueError(f"messages[{i}].content has no text but whitespace (the rendered prompt is blank)")


def messages(body: Mapping[str, Any]) -> None:
    """The Converse / Nova messages schema: user/assistant turns of non-blank text blocks, a positive maxTokens."""
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise ValueError("messages must be a non-empty list")
    for i, message in enumerate(turns):
        content = message.get("content")
        if message.get("role") not in ("user", "assistant"):
            raise ValueError(f"messages[{i}].role must be 'user' or 'assistant'")
        if not isinstance(content, list) or not any(
            isinstance(c, dict) and str(c.get("text") or "").strip() for c in content
        ):
            raise ValueError(f"messages[{i}].content must be a list of {{'text': ...}} blocks with non-blank text")
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens <= 0):
        raise ValueError("inferenceConfig.maxTokens must be a positive integer")


def _converse(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    if "anthropic_version" in body or "inputText" in body:
        raise ValueError("Converse jobs need Converse-shaped bodies, not InvokeModel bodies")
    messages(body)


def _nova(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    check_keys(body, ("schemaVersion", "system", "messages", "inferenceConfig", "toolConfig"), "Amazon Nova")
    if body.get("schemaVersion", NOVA_SCHEMA_VERSION) != NOVA_SCHEMA_VERSION:
        raise ValueError(f"schemaVersion must be {NOVA_SCHEMA_VERSION!r}")
    messages(body)


def _llama(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    assert isinstance(adapter, PromptStringAdapter)
    check_keys(body, ("prompt", "temperature", "top_p", "max_gen_len", "images"), "Meta Llama")
    unwrap(adapter, body.get("prompt"))
    if "max_gen_len" not in body:
        raise ValueError("max_gen_len is required")
    check_number(body, "max_gen_len", 1, LLAMA_MAX_GEN_LEN, integer=True)
    check_number(body, "temperature", 0, 1)
    check_number(body, "top_p", 0, 1)


def _sampling(body: Mapping[str, Any]) -> None:
    check_number(body, "max_tokens", 1, float("inf"), integer=True)
    check_number(body, "temperature", 0, 1)
    check_number(body, "top_p", 0, 1)


def _mistral_completion(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    assert isinstance(adapter, PromptStringAdapter)
    check_keys(body, ("prompt", "max_tokens", "stop", "temperature", "top_p", "top_k"), "Mistral text completion")
    unwrap(adapter, body.get("prompt"))
    _sampling(body)
    stop = body.get("stop", [])
    if not isinstance(stop, list) or len(stop) > MISTRAL_MAX_STOP or not all(isinstance(s, str) for s in stop):
        raise ValueError(f"stop must be a list of at most {MISTRAL_MAX_STOP} strings")


def _mistral_chat(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    roles = ("system", "user", "assistant", "tool")
    check_keys(
        body, ("messages", "tools", "tool_choice", "max_tokens", "temperature", "top_p"), "Mistral chat completion"
    )
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise ValueError("messages must be a non-empty list")
    for i, message in enumerate(turns):
        if not isinstance(message, dict) or message.get("role") not in roles:
            raise ValueError(f"messages[{i}].role must be one of {roles}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"messages[{i}].content must be a string")
    if turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise ValueError("messages: the last message must be the user's, with non-blank text (the prompt is blank)")
    _sampling(body)


def _titan_v2(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    assert isinstance(adapter, EmbeddingAdapter)
    check_text(adapter, body.get("inputText"))
    if body.get("dimensions", 1024) not in TITAN_V2_DIMENSIONS:
        raise ValueError(f"dimensions must be one of {TITAN_V2_DIMENSIONS}")


def _titan_v1(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    assert isinstance(adapter, EmbeddingAdapter)
    check_text(adapter, body.get("inputText"))
    extra = sorted(set(body) - {"inputText"})
    if extra:
        raise ValueError(f"Titan Text Embeddings V1 takes only inputText; remove {extra}")


def _cohere(adapter: ModelAdapter, body: Mapping[str, Any]) -> None:
    assert isinstance(adapter, EmbeddingAdapter)
    check_keys(body, ("texts", "images", "input_type", "truncate", "embedding_types"), "Cohere Embed")
    texts = body.get("texts")
    if not isinstance(texts, list) or len(texts) != 1:
        raise ValueError("texts must be a list holding the row's one text")
    check_text(adapter, texts[0])
    if body.get("input_type") not in COHERE_INPUT_TYPES:
        raise ValueError(f"input_type is required: one of {COHERE_INPUT_TYPES}")
    if body.get("truncate", "NONE") not in COHERE_TRUNCATE:
        raise ValueError(f"truncate must be one of {COHERE_TRUNCATE}")
    if body.get("embedding_types", EMBEDDING_TYPES) != EMBEDDING_TYPES:
        raise ValueError(f"embedding_types must be {EMBEDDING_TYPES} (vectors are stored as float32)")


_VALIDATORS: dict[str, Callable[[ModelAdapter, Mapping[str, Any]], None]] = {
    "anthropic-claude": _claude,
    "converse": _converse,
    "amazon-nova": _nova,
    "meta-llama": _llama,
    "mistral-completion": _mistral_completion,
    "mistral-chat": _mistral_chat,
    "amazon-titan-embed-v2": _titan_v2,
    "amazon-titan-embed-v1": _titan_v1,
    "cohere-embed-v3": _cohere,
}
