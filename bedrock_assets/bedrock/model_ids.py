"""Model identity: the base model an id, a cross-region inference profile or an ARN names.

Quotas, prices, slot counting and adapters compare models by ``model_key``, so
``us.anthropic.claude-...``, ``arn:aws:bedrock:...:foundation-model/anthropic.claude-...`` and the
plain id are one model.
"""

from __future__ import annotations

PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"})

# Models Bedrock documents for batch inference that the price table (bedrock/prices.json) has no price for
# ("Supported Regions and models for batch inference",
# https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-supported.html): listed models too,
# "cost unknown" until price_overrides gives one.
LISTED_WITHOUT_PRICE = frozenset(
    {
        "ai21.jamba-1-5-large-v1:0",
        "ai21.jamba-1-5-mini-v1:0",
        "cohere.embed-v4:0",
        "deepseek.r1-v1:0",
        "mistral.mistral-large-2407-v1:0",
        "writer.palmyra-x4-v1:0",
        "writer.palmyra-x5-v1:0",
    }
)


def base_model_id(model_id: str) -> str:
    """Strip a cross-region inference profile prefix (``us.``, ``eu.``, ``apac.``, ``global.``)."""
    head, _, rest = model_id.partition(".")
    if head in PROFILE_PREFIXES and rest:
        return rest
    return model_id


def model_key(model_id: str) -> str:
    """Comparable model identity: ARNs and inference-profile prefixes reduce to the base model id."""
    return base_model_id(model_id.rsplit("/", 1)[-1])
