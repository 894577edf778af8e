"""Model-family adapters and the lookup from (model id, invocation type) to adapter."""

from __future__ import annotations

from bedrock_assets.bedrock.model_ids import model_key
from bedrock_assets.models.base import InferenceSettings, ModelAdapter, ParsedOutput, PromptSettings
from bedrock_assets.models.claude import ClaudeMessagesAdapter
from bedrock_assets.models.cohere_embed import COHERE_MODELS, CohereEmbedAdapter
from bedrock_assets.models.converse import ConverseAdapter
from bedrock_assets.models.llama import LlamaAdapter
from bedrock_assets.models.mistral import (
    MISTRAL_CHAT_MODELS,
    MISTRAL_COMPLETION_MAX_TOKENS,
    MistralChatAdapter,
    MistralCompletionAdapter,
)
from bedrock_assets.models.nova import NOVA_TEXT_MODELS, NovaAdapter
from bedrock_assets.models.titan_embed import TitanEmbedV1Adapter, TitanEmbedV2Adapter

# InvokeModel adapters by base model id prefix (after any inference-profile prefix or ARN).
_INVOKE_MODEL_ADAPTERS: dict[str, type[ModelAdapter]] = {
    "anthropic.claude": ClaudeMessagesAdapter,
    "amazon.titan-embed-text-v2": TitanEmbedV2Adapter,
    "amazon.titan-embed-text-v1": TitanEmbedV1Adapter,
    **dict.fromkeys(NOVA_TEXT_MODELS, NovaAdapter),
    "meta.llama3": LlamaAdapter,
    "meta.llama4": LlamaAdapter,
    **dict.fromkeys(MISTRAL_CHAT_MODELS, MistralChatAdapter),
    **dict.fromkeys(MISTRAL_COMPLETION_MAX_TOKENS, MistralCompletionAdapter),
    **dict.fromkeys(COHERE_MODELS, CohereEmbedAdapter),
}
# Text models that can run Converse-type batch jobs.
_CONVERSE_MODELS = ("anthropic.claude", "amazon.nova", "meta.llama", "mistral.")
INVOCATION_TYPES = ("InvokeModel", "Converse")


def adapter_for(
    model_id: str, invocation_type: str, prompt: PromptSettings, inference: InferenceSettings
) -> ModelAdapter:
    """The adapter for a model; ValueError naming the model when none fits."""
    base = model_key(model_id)
    if invocation_type not in INVOCATION_TYPES:
        raise ValueError(f"model.invocation_type must be one of {INVOCATION_TYPES}, got {invocation_type!r}")
    if invocation_type == "Converse":
        if not base.startswith(_CONVERSE_MODELS):
            raise ValueError(f"model.id {model_id!r} has no Converse adapter; supported: {_CONVERSE_MODELS}")
        return ConverseAdapter(model_id, prompt, inference)
    for prefix, cls in _INVOKE_MODEL_ADAPTERS.items():
        if base.startswith(prefix):
            return cls(model_id, prompt, inference)
    raise ValueError(
        f"model.id {model_id!r} has no InvokeModel adapter; supported prefixes: {sorted(_INVOKE_MODEL_ADAPTERS)}"
    )


__all__ = [
    "INVOCATION_TYPES",
    "InferenceSettings",
    "ModelAdapter",
    "ParsedOutput",
    "PromptSettings",
    "adapter_for",
]
