"""Model identity: the base model an id, a cross-region inference profile or an ARN names.

Quotas, prices, slot counting and adapters compare models by ``model_key``, so
``us.anthropic.claude-...``, ``arn:aws:bedrock:...:foundation-model/anthropic.claude-...`` and the
plain id are one model.
"""

from __future__ import annotations

PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"})


def base_model_id(model_id: str) -> str:
    """Strip a cross-region inference profile prefix (``us.``, ``eu.``, ``apac.``, ``global.``)."""
    head, _, rest = model_id.partition(".")
    if head in PROFILE_PREFIXES and rest:
        return rest
    return model_id


def model_key(model_id: str) -> str:
    """Comparable model identity: ARNs and inference-profile prefixes reduce to the base model id."""
    return base_model_id(model_id.rsplit("/", 1)[-1])
