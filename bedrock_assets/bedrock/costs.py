"""What a pipeline will cost (an estimate before submission) and what it did cost (the bill).

Input tokens are expected at ``CHARS_PER_TOKEN`` characters of request text per token (prompt
text, system prompt included; the usual figure for English text), and at least one per record.
Their worst case is a bound, not an estimate: the bytes of the records' JSONL lines. A token covers
at least one byte of UTF-8 text (byte-level BPE, and SentencePiece with byte fallback, the
tokenizers of the families we support), and each record's JSON framing (its keys, recordId and
newline, well over 50 bytes) is longer than the chat template and special tokens the model adds to
a message; CJK text, code and short records, where characters / 4 is far too low, stay within it.
Bedrock's own count is in the job output afterwards. Output tokens have a worst case (every record
uses ``max_tokens``) and an expected case (``EXPECTED_OUTPUT_SHARE`` of it); embedding models
produce no output tokens.
Batch jobs are priced at the batch price, remainders answered on demand at the on-demand price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bedrock_assets.bedrock.naming import CANARY_SHARD, ON_DEMAND_ARN
from bedrock_assets.bedrock.prices import DEFAULT_TIER, Mode, ModelPrice, usd
from bedrock_assets.ledger import JobAttempt

CHARS_PER_TOKEN = 4
EXPECTED_OUTPUT_SHARE = 0.25


@dataclass(frozen=True)
class TokenEstimate:
    """Tokens of a set of records: input (estimated) and output (expected and worst case)."""

    records: int = 0
    input_tokens: int = 0  # expected
    output_expected: int = 0
    output_worst: int = 0
    input_worst: int = 0  # the bound: the JSONL bytes

    @classmethod
    def of(cls, records: int, input_chars: int, max_output_tokens: int, jsonl_bytes: int) -> TokenEstimate:
        """``max_output_tokens``: the request's max_tokens, 0 for embedding models; ``jsonl_bytes``: of the
        records' input lines."""
        expected = max(math.ceil(input_chars / CHARS_PER_TOKEN), records)
        return cls(
            records,
            expected,
            math.ceil(records * max_output_tokens * EXPECTED_OUTPUT_SHARE),
            records * max_output_tokens,
            max(jsonl_bytes, expected),
        )

    def __add__(self, other: TokenEstimate) -> TokenEstimate:
        return TokenEstimate(
            self.records + other.records,
            self.input_tokens + other.input_tokens,
            self.output_expected + other.output_expected,
            self.output_worst + other.output_worst,
            self.input_worst + other.input_worst,
        )

    def cost(self, price: ModelPrice | None, mode: Mode = Mode.BATCH, tier: str = DEFAULT_TIER) -> CostRange | None:
        if price is None:
            return None
        p = price.of(mode, tier)
        return CostRange(p.cost(self.input_tokens, self.output_expected), p.cost(self.input_worst, self.output_worst))


@dataclass(frozen=True)
class CostRange:
    expected: float
    worst: float

    def __str__(self) -> str:
        return f"{usd(self.expected)} expected, {usd(self.worst)} at most"


def attempt_mode(attempt: JobAttempt) -> Mode:
    return Mode.ON_DEMAND if (attempt.job_arn or "").startswith(ON_DEMAND_ARN) else Mode.BATCH


def actual_cost(attempt: JobAttempt, price: ModelPrice | None) -> float | None:
    """What a finished attempt cost by the tokens its output reports (None: no price, or not read yet)."""
    if price is None or attempt.input_tokens is None:
        return None
    tier = attempt.service_tier or DEFAULT_TIER
    return price.of(attempt_mode(attempt), tier).cost(attempt.input_tokens, attempt.output_tokens or 0)


def lane_of(attempt: JobAttempt) -> str:
    """How an attempt was answered: ``batch``, ``on demand (<service tier>)``, or the canary (on demand too)."""
    if attempt_mode(attempt) is Mode.BATCH:
        return "batch"
    tier = attempt.service_tier or DEFAULT_TIER
    return f"canary ({tier})" if attempt.shard == CANARY_SHARD else f"on demand ({tier})"


@dataclass(frozen=True)
class Lane:
    """What one lane (batch, or on demand at a service tier) answered and cost."""

    records: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class Bill:
    """The cost of a pipeline's jobs by their tokens, split by how they were run (lane), by shard and by round."""

    batch: float
    on_demand: float
    by_shard: dict[str, float]
    unpriced: bool = False
    lanes: dict[str, Lane] = field(default_factory=dict)

    def by_lane(self) -> list[dict[str, Any]]:
        """One row per lane: the records it processed and what they cost."""
        return [
            {"lane": name, "records": lane.records, "cost": usd(None if self.unpriced else lane.cost)}
            for name, lane in sorted(self.lanes.items())
        ]

    @property
    def total(self) -> float | None:
        return None if self.unpriced else self.batch + self.on_demand

    @classmethod
    def of(cls, attempts: Iterable[JobAttempt], price: ModelPrice | None) -> Bill:
        batch = on_demand = 0.0
        by_shard: dict[str, float] = {}
        lanes: dict[str, Lane] = {}
        for a in attempts:
            cost = actual_cost(a, price)
            if a.counts.processed or cost:
                lane = lanes.get(lane_of(a), Lane())
                lanes[lane_of(a)] = Lane(lane.records + a.counts.processed, lane.cost + (cost or 0.0))
            if cost is None:
                continue
            by_shard[a.shard] = by_shard.get(a.shard, 0.0) + cost
            if attempt_mode(a) is Mode.ON_DEMAND:
                on_demand += cost
            else:
                batch += cost
        return cls(batch, on_demand, by_shard, unpriced=price is None, lanes=lanes)

    def by_round(self, round_of: Callable[[str], int]) -> list[dict[str, Any]]:
        """The bill per round (0: the first pass), given which round each shard belongs to."""
        rounds: dict[int, float] = {}
        for shard, cost in self.by_shard.items():
            rounds[round_of(shard)] = rounds.get(round_of(shard), 0.0) + cost
        return [{"round": n, "cost": usd(None if self.unpriced else c)} for n, c in sorted(rounds.items())]
