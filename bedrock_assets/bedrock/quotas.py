"""Bedrock batch inference quotas per model, with documented defaults and overrides.

Live values differ per account and region: check AWS Service Quotas and override them in the
pipeline spec (``shards:``) or on the Bedrock resource (``quota_overrides``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from bedrock_assets.bedrock.model_ids import base_model_id, model_key

GB = 1024**3


@dataclass(frozen=True)
class BatchQuotas:
    """Limits a batch job must honour."""

    min_records_per_job: int = 100
    max_records_per_file: int = 50_000
    max_records_per_job: int = 50_000
    max_file_bytes: int = 1 * GB
    max_job_bytes: int = 5 * GB
    max_concurrent_jobs: int = 20

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> BatchQuotas:
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown quota name(s) {sorted(unknown)}; expected some of {sorted(known)}")
        return replace(self, **{k: int(v) for k, v in overrides.items()})

    @property
    def max_records_per_shard(self) -> int:
        """One input file per job: a shard obeys both the file and the job record limits."""
        return min(self.max_records_per_file, self.max_records_per_job)

    @property
    def max_shard_bytes(self) -> int:
        return min(self.max_file_bytes, self.max_job_bytes)


_DEFAULT = BatchQuotas()
_CUSTOM_MODEL_CONCURRENCY = 3
# Documented defaults that differ from the above, by base model id. Source: the Amazon Bedrock service
# quotas table, https://docs.aws.amazon.com/general/latest/gr/bedrock.html#limits_bedrock (as of mid-2025):
# "Minimum number of records per batch inference job for Llama 4 Scout" is 50 and "Batch inference job
# size (in GB) for Nova Pro V1" is 100. Every other model listed there (Claude 3/3.5, Llama 3.1-3.3 and 4
# Maverick, Mistral Large 2 (24.07) and Small, Nova Micro/Lite/Pro, Titan Text Embeddings V2 and
# Multimodal G1) has the defaults: 100-50,000 records per job, 50,000 per file, 1 GB per file, 5 GB per
# job, 20 jobs in progress or submitted.
_MODEL_DEFAULTS: dict[str, dict[str, int]] = {
    "meta.llama4-scout-17b-instruct-v1:0": {"min_records_per_job": 50},
    "amazon.nova-pro-v1:0": {"max_job_bytes": 100 * GB},
}


def quotas_for(model_id: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> BatchQuotas:
    """Quotas for a model id: its documented defaults, then ``overrides[model_id]`` (or its base id)."""
    base = base_model_id(model_id)
    quotas = _DEFAULT.with_overrides(_MODEL_DEFAULTS.get(model_key(model_id)))
    if ":custom-model/" in model_id or ":provisioned-model/" in model_id:
        quotas = replace(quotas, max_concurrent_jobs=_CUSTOM_MODEL_CONCURRENCY)
    if overrides:
        quotas = quotas.with_overrides(overrides.get(model_id) or overrides.get(base))
    return quotas
