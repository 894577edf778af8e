"""A pipeline's plan before any money is spent: shards, records, bytes, jobs, tokens and the cost range.

``bedrock-assets plan`` prints it without writing anything; raw_dataset records the same plan as
its metadata in the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import MetadataValue

from bedrock_assets.bedrock.costs import CHARS_PER_TOKEN, EXPECTED_OUTPUT_SHARE, TokenEstimate
from bedrock_assets.bedrock.prices import DEFAULT_TIER, Mode, ModelPrice, usd
from bedrock_assets.deadline import Throughput
from bedrock_assets.durations import describe
from bedrock_assets.models import ModelAdapter
from bedrock_assets.shards import ShardIndex, ShardInfo
from bedrock_assets.spec import DeadlineSpec, PipelineSpec

if TYPE_CHECKING:
    from bedrock_assets.pipeline import Step


def max_output_tokens(adapter: ModelAdapter) -> int:
    """Output tokens a request may use: max_tokens for text models, none for embeddings."""
    return adapter.inference.max_tokens if adapter.kind == "text" else 0


def shard_estimate(shard: ShardInfo, adapter: ModelAdapter) -> TokenEstimate:
    """The shard's tokens; a retry shard resending answers cut off counts every record at its raised max_tokens."""
    cap = max_output_tokens(adapter)
    max_output = max(cap, shard.max_tokens or 0) if cap else 0
    return TokenEstimate.of(shard.records, shard.input_chars, max_output, shard.bytes)


def worst_cost(
    shard: ShardInfo, adapter: ModelAdapter, price: ModelPrice | None, mode: Mode = Mode.BATCH, tier: str = DEFAULT_TIER
) -> float | None:
    """The most a shard's job can cost (every record uses max_tokens; on demand at the service ``tier``); None
    without a price."""
    cost = shard_estimate(shard, adapter).cost(price, mode, tier)
    return None if cost is None else cost.worst


@dataclass(frozen=True)
class PipelinePlan:
    """What ``bedrock-assets plan`` prints and raw_dataset records: the shards and the cost range."""

    name: str
    model_id: str
    max_tokens: int  # of a text model's requests; 0 for embeddings
    budget_usd: float | None
    shards: ShardIndex
    estimate: TokenEstimate
    price: ModelPrice | None
    resend_max_tokens: int | None = None  # retry.truncated_max_tokens
    deadline: str | None = None  # how the spec states its deadline (None: it has none)
    service_tier: str = DEFAULT_TIER  # of the on-demand calls
    lead: str | None = None  # how long before the deadline the batch cutoff falls, and why
    canary_records: int = 0  # sent on demand before the first batch job

    @classmethod
    def of(cls, step: Step, shards: ShardIndex) -> PipelinePlan:
        adapter, spec = step.adapter, step.spec
        estimate = sum((shard_estimate(s, adapter) for s in shards.shards), TokenEstimate())
        return cls(
            spec.name,
            spec.model.id,
            max_output_tokens(adapter),
            spec.budget_usd,
            shards,
            estimate,
            step.price,
            spec.retry.truncated_max_tokens,
            _deadline_text(spec.deadline) if spec.deadline.active else None,
            spec.retry.service_tier,
            _lead(spec, estimate.records) if spec.deadline.active else None,
            min(spec.canary.records, estimate.records),
        )

    def resend_line(self) -> list[str]:
        """What resending an answer cut off at max_tokens costs at most (when the pipeline does that)."""
        if self.resend_max_tokens is None:
            return []
        per_record = self.estimate.input_worst / max(self.estimate.records, 1)
        worst = TokenEstimate(1000, 0, 0, 1000 * self.resend_max_tokens, round(per_record * 1000)).cost(self.price)
        cost = f": up to {usd(worst.worst)} per 1,000 such records" if worst is not None else ""
        return [
            f"  structured answers cut off at max_tokens are sent once more with max_tokens {self.resend_max_tokens}{cost}"
        ]

    def canary_line(self) -> list[str]:
        """What the canary's records cost on demand (their share of the estimate)."""
        if not self.canary_records:
            return []
        share = self.canary_records / max(self.estimate.records, 1)
        cost = self.estimate.cost(self.price, Mode.ON_DEMAND, self.service_tier)
        price = f": ~{usd(cost.expected * share)}, {usd(cost.worst * share)} at most" if cost is not None else ""
        return [f"  canary: {self.canary_records} record(s) on demand before the first batch job{price}"]

    def deadline_lines(self) -> list[str]:
        """Under a deadline: the worst case, the batch cutoff sending every record on demand."""
        if self.deadline is None:
            return []
        cost = self.estimate.cost(self.price, Mode.ON_DEMAND, self.service_tier)
        worst = f"{cost}" if cost is not None else "cost unknown"
        return [
            f"  deadline {self.deadline}: the batch cutoff falls {self.lead}",
            f"  if the cutoff sends every record on demand ({self.service_tier} tier): {worst}",
        ]

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards.shards)

    def lines(self) -> list[str]:
        e, cost = self.estimate, self.estimate.cost(self.price)
        max_tokens = self.max_tokens if e.output_worst else 0
        budget = f"; budget_usd {usd(self.budget_usd)}" if self.budget_usd is not None else ""
        lines = [
            f"plan {self.name}: {self.shards.rows} rows ({self.shards.rejected} rejected before submission) -> "
            f"{e.records} records in {len(self.shards.shards)} shards = {len(self.shards.shards)} batch jobs, "
            f"{self.bytes:,} bytes of JSONL",
            f"  input tokens ~{e.input_tokens:,} expected (prompt characters / {CHARS_PER_TOKEN}), "
            f"{e.input_worst:,} at most (the JSONL bytes)",
            f"  output tokens ~{e.output_expected:,} expected ({EXPECTED_OUTPUT_SHARE:.0%} of max_tokens "
            f"{max_tokens}), {e.output_worst:,} at most"
            if e.output_worst
            else "  output tokens: none (embeddings)",
            f"  cost at the batch price: {cost}{budget}"
            if cost is not None
            else f"  cost unknown: no price for {self.model_id} (set price_overrides on the bedrock resource)",
        ]
        price = [f"  price: {self.price.describe()}"] if self.price else []
        return lines + self.resend_line() + self.canary_line() + self.deadline_lines() + price

    def metadata(self) -> dict[str, Any]:
        e, cost = self.estimate, self.estimate.cost(self.price)
        return {
            "planned_records": e.records,
            "input_tokens_estimate": e.input_tokens,
            "input_tokens_worst": e.input_worst,
            "output_tokens_expected": e.output_expected,
            "output_tokens_worst": e.output_worst,
            **(
                {"cost_expected_usd": round(cost.expected, 10), "cost_worst_usd": round(cost.worst, 10)}
                if cost is not None
                else {"cost": "cost unknown (no price for this model)"}
            ),
            "price": MetadataValue.text(self.price.describe() if self.price else "no price"),
            **self._deadline_metadata(),
        }

    def _deadline_metadata(self) -> dict[str, Any]:
        cost = self.estimate.cost(self.price, Mode.ON_DEMAND, self.service_tier)
        if self.deadline is None or cost is None:
            return {}
        return {"cost_worst_all_on_demand_usd": round(cost.worst, 10)}


def _lead(spec: PipelineSpec, records: int) -> str:
    """The cutoff's lead before anything ran: the margin plus every record at the assumed throughput."""
    throughput = Throughput.of(spec, [])
    lead = spec.deadline.margin_delta + throughput.time_for(records)
    why = f"the margin + {records:,} records at {throughput.describe()}; it moves later as jobs process"
    return f"{describe(lead)} before it ({why})"


def _deadline_text(deadline: DeadlineSpec) -> str:
    when = f"within {deadline.within} of the first job" if deadline.within else f"at {deadline.at:%Y-%m-%dT%H:%M:%SZ}"
    return f"{when}, margin {deadline.margin}"
