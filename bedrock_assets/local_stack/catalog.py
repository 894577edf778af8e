"""Catalog of the Bedrock model ids the emulator knows, and which of them support batch inference.

Sources (Amazon Bedrock User Guide; compiled 2026-01-25, re-check when adding models):
- "Model support by feature", https://docs.aws.amazon.com/bedrock/latest/userguide/models-features.html
  (copy fetched 2026-01-25): its two "Batch inference" columns (single-Region / cross-Region profile)
  give the Claude, Nova, Llama rows and the known models without batch (Claude Opus 4 / 4.1, Cohere
  Embed v4, DeepSeek-R1, Pixtral Large, Writer Palmyra).
- "Supported Regions and models for batch inference",
  https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-supported.html
  (stored copies, 2025): Titan Text Embeddings V2, Titan Multimodal Embeddings G1, Nova 2 multimodal
  embeddings, Mistral Large (24.07), Mistral Small (24.02). Titan Text Embeddings V1 is not listed.
- context windows: each model's card / launch page on the same site.

Simplifications: the docs say per model whether batch works through the base id, a cross-Region
inference profile (``us.`` / ``eu.`` / ``apac.`` / ``global.`` ...) or both, and in which Regions;
the emulator accepts both routes in every Region for a batch-capable model. Cohere Embed v3 is in
neither table, nor in the service quotas table (https://docs.aws.amazon.com/general/latest/gr/bedrock.html,
mid-2025: no batch quotas for Cohere); it stays batch-capable here only because the emulator has
always answered it (unverified against the live service). Models without batch support (Titan Text
Embeddings V1, Llama 3 8B/70B, Mistral 7B / Mixtral / Large 24.02) still have a family: the runtime
API answers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# families the synthetic model outputs know (see synthetic.py); MISTRAL is the text completion API,
# MISTRAL_CHAT the chat completion API (Mistral Large 2, 24.07)
CLAUDE, TITAN_EMBED_V2, TITAN_EMBED_V1, NOVA, LLAMA, MISTRAL, MISTRAL_CHAT, COHERE_EMBED, GENERIC = (
    "claude",
    "titan-embed-v2",
    "titan-embed-v1",
    "nova",
    "llama",
    "mistral",
    "mistral-chat",
    "cohere-embed",
    "generic",
)
EMBEDDING_FAMILIES = (TITAN_EMBED_V2, TITAN_EMBED_V1, COHERE_EMBED)  # InvokeModel only, no Converse


@dataclass(frozen=True)
class ModelInfo:
    """One base model: its emulated family (None: not emulated), batch support and input limits."""

    model_id: str
    family: str | None
    batch: bool
    context_tokens: int | None = None  # prompt limit in (estimated) tokens
    max_input_chars: int | None = None  # per-text character limit (embedding models)
    structured_outputs: bool = False  # takes a JSON schema output format (output_config / outputConfig)

    @property
    def service_tiers(self) -> frozenset[str]:
        """The runtime service tiers the model is offered at (``default`` for every model)."""
        return frozenset({"default", *PRIORITY_AND_FLEX.get(self.model_id, ())})


# Models offered at the Priority and Flex tiers among those emulated: the launch post
# (https://aws.amazon.com/about-aws/whats-new/2025/11/amazon-bedrock-priority-flex-inference-service-tiers)
# names Nova Pro and Nova Premier (with gpt-oss, DeepSeek V3.1 and Qwen3, not emulated).
PRIORITY_AND_FLEX = {
    "amazon.nova-pro-v1:0": ("priority", "flex"),
    "amazon.nova-premier-v1:0": ("priority", "flex"),
}
# ServiceTierType (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ServiceTier.html)
SERVICE_TIER_VALUES = ("priority", "default", "flex", "reserved")


def _models(
    family: str | None, batch: bool, context: int | None, *ids: str, chars: int | None = None, structured: bool = False
) -> list:
    return [ModelInfo(i, family, batch, context, chars, structured) for i in ids]


_ENTRIES: list[ModelInfo] = [
    # --- batch inference supported --------------------------------------------------------------
    *_models(
        CLAUDE,
        True,
        200_000,
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "anthropic.claude-3-opus-20240229-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",  # cross-Region profile only
        "anthropic.claude-sonnet-4-20250514-v1:0",  # cross-Region profile only
    ),
    # structured outputs: "You can use structured outputs with Claude Sonnet 4.5, Claude Haiku 4.5, Claude
    # Opus 4.5, and Claude Opus 4.6" (claude-messages-structured-outputs.html)
    *_models(
        CLAUDE,
        True,
        200_000,
        "anthropic.claude-sonnet-4-5-20250929-v1:0",  # cross-Region profile only
        "anthropic.claude-haiku-4-5-20251001-v1:0",  # cross-Region profile only
        "anthropic.claude-opus-4-5-20251101-v1:0",  # cross-Region profile only
        structured=True,
    ),
    *_models(NOVA, True, 128_000, "amazon.nova-micro-v1:0"),
    *_models(NOVA, True, 300_000, "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0"),
    *_models(NOVA, True, 1_000_000, "amazon.nova-premier-v1:0", "amazon.nova-2-lite-v1:0"),  # profile only
    # Titan V2 documents 8,192 tokens or 50,000 characters; only the character limit is exact here
    *_models(TITAN_EMBED_V2, True, None, "amazon.titan-embed-text-v2:0", chars=50_000),
    *_models(
        LLAMA,
        True,
        128_000,
        "meta.llama3-1-8b-instruct-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
        "meta.llama3-1-405b-instruct-v1:0",
        "meta.llama3-2-1b-instruct-v1:0",
        "meta.llama3-2-3b-instruct-v1:0",
        "meta.llama3-2-11b-instruct-v1:0",
        "meta.llama3-2-90b-instruct-v1:0",
        "meta.llama3-3-70b-instruct-v1:0",
    ),
    *_models(LLAMA, True, 1_000_000, "meta.llama4-maverick-17b-instruct-v1:0"),
    *_models(LLAMA, True, 3_500_000, "meta.llama4-scout-17b-instruct-v1:0"),
    *_models(MISTRAL_CHAT, True, 128_000, "mistral.mistral-large-2407-v1:0"),
    *_models(MISTRAL, True, 32_000, "mistral.mistral-small-2402-v1:0"),
    *_models(COHERE_EMBED, True, None, "cohere.embed-english-v3", "cohere.embed-multilingual-v3", chars=2_048),
    # batch-capable per the docs, but the emulator has no synthetic output for them
    *_models(None, True, None, "amazon.titan-embed-image-v1", "amazon.nova-2-multimodal-embeddings-v1:0"),
    # --- known models without batch inference (absent from, or "No" in, the tables above) ---------
    *_models(
        CLAUDE,
        False,
        200_000,
        "anthropic.claude-opus-4-20250514-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
    ),
    # Titan Text Embeddings V1: 8,192 tokens of input, no documented character limit
    *_models(TITAN_EMBED_V1, False, None, "amazon.titan-embed-text-v1"),
    *_models(None, False, None, "amazon.titan-text-express-v1", "amazon.titan-text-lite-v1"),
    *_models(None, False, None, "amazon.titan-text-premier-v1:0"),
    *_models(LLAMA, False, 8_000, "meta.llama3-8b-instruct-v1:0", "meta.llama3-70b-instruct-v1:0"),
    *_models(
        MISTRAL,
        False,
        32_000,
        "mistral.mistral-7b-instruct-v0:2",
        "mistral.mixtral-8x7b-instruct-v0:1",
        "mistral.mistral-large-2402-v1:0",
    ),
    *_models(None, False, None, "mistral.pixtral-large-2502-v1:0"),
    *_models(None, False, None, "cohere.command-r-v1:0", "cohere.command-r-plus-v1:0", "cohere.embed-v4:0"),
    *_models(None, False, None, "deepseek.r1-v1:0", "writer.palmyra-x4-v1:0", "writer.palmyra-x5-v1:0"),
    *_models(None, False, None, "ai21.jamba-1-5-large-v1:0", "ai21.jamba-1-5-mini-v1:0"),
]
CATALOG: dict[str, ModelInfo] = {m.model_id: m for m in _ENTRIES}

# application inference profiles and provisioned models hide their base model: answered generically
HIDDEN_MODEL = ModelInfo("(model behind an application inference profile or provisioned model)", GENERIC, True)

PROFILE_PREFIXES = ("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global")
_PROFILE_RE = re.compile(r"(?:(" + "|".join(re.escape(p) for p in PROFILE_PREFIXES) + r")\.)?(.*)")
_ARN_RE = re.compile(
    r"arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]+:(\d{12})?:"
    r"(foundation-model|inference-profile|application-inference-profile|provisioned-model)/(.+)"
)


@dataclass(frozen=True)
class Resolved:
    """What a modelId names: ``info`` (None if unknown) and the ``kind`` of identifier used."""

    info: ModelInfo | None
    kind: str  # "model", "profile", "application-profile", "provisioned"


def resolve(model_id: str) -> Resolved:
    """Resolve a base id, a cross-Region profile id (``us.`` ...) or a Bedrock model/profile ARN."""
    match = _ARN_RE.fullmatch(model_id)
    if match:
        kind, rest = match.group(2), match.group(3)
        if kind == "application-inference-profile":
            return Resolved(HIDDEN_MODEL if re.fullmatch(r"[a-zA-Z0-9]+", rest) else None, "application-profile")
        if kind == "provisioned-model":
            return Resolved(HIDDEN_MODEL, "provisioned")
        prefix, base = _PROFILE_RE.fullmatch(rest).groups()  # type: ignore[union-attr]
        if (kind == "inference-profile") != (prefix is not None):  # profiles always carry a geography
            return Resolved(None, kind)
        return Resolved(CATALOG.get(base), "profile" if prefix else "model")
    prefix, base = _PROFILE_RE.fullmatch(model_id).groups()  # type: ignore[union-attr]
    return Resolved(CATALOG.get(base), "profile" if prefix else "model")


def lookup(model_id: str) -> ModelInfo | None:
    """The catalogued model a modelId names (hidden models -> a generic entry), or None."""
    return resolve(model_id).info


def batch_model_error(model_id: str) -> str | None:
    """Why CreateModelInvocationJob refuses ``model_id`` (None when it is accepted)."""
    resolved = resolve(model_id)
    info = resolved.info
    if resolved.kind == "provisioned":
        return f"modelId: provisioned models do not support batch inference ('{model_id}')."
    if info is None:
        return f"modelId: the provided model identifier '{model_id}' is invalid."
    if not info.batch:
        return (
            f"modelId: model '{model_id}' does not support batch inference. "
            "See 'Supported Regions and models for batch inference'."
        )
    if info.family is None:
        return f"modelId: model '{model_id}' supports batch inference, but the local emulator has no outputs for it."
    return None


def runtime_model_error(model_id: str) -> str | None:
    """Why InvokeModel/Converse refuses ``model_id`` (None when it is answered)."""
    resolved = resolve(model_id)
    if resolved.info is None:
        return "The provided model identifier is invalid."
    if resolved.info.family is None:
        return f"The local emulator has no outputs for model '{model_id}'."
    return None
