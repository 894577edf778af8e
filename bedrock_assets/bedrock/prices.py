"""Bedrock prices as data: ``prices.json`` (USD per 1,000 tokens, with each figure's date and source).

A model's batch price is the listed one, else ``batch_discount_default`` (50%) of its on-demand
price. On demand, the runtime API's service tier scales the standard price by the table's
``service_tiers`` factor (priority a premium, flex a discount); a model offers the tiers its entry lists
in ``service_tiers`` (every model offers ``default``). The bedrock resource's ``price_overrides`` replace figures per model (enterprise discounts,
models not in the file). A model with no price has no cost: callers say "cost unknown", never $0.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bedrock_assets.bedrock.model_ids import LISTED_WITHOUT_PRICE, model_key

PRICES_FILE = Path(__file__).with_name("prices.json")
OVERRIDE_KEYS = ("on_demand_input", "on_demand_output", "batch_input", "batch_output")


class Mode(StrEnum):
    BATCH = "batch"
    ON_DEMAND = "on_demand"


DEFAULT_TIER = "default"


@dataclass(frozen=True)
class TierPrice:
    """A service tier's price relative to the standard on-demand one, with where the figure comes from."""

    tier: str
    factor: float
    as_of: str = ""
    source: str = ""


def service_tier(tier: str) -> TierPrice:
    """The price factor of a runtime service tier (``default``: 1)."""
    tiers = {k: v for k, v in _table()["service_tiers"].items() if isinstance(v, dict)}
    entry = tiers.get(tier)
    if entry is None:
        raise ValueError(f"unknown service tier {tier!r}; expected one of {sorted(tiers)}")
    return TierPrice(tier, float(entry["factor"]), entry.get("as_of", ""), entry.get("source", ""))


def tiers_offered(model_id: str) -> list[str]:
    """The runtime service tiers the price table lists for a model (at least ``default``)."""
    entry = _table()["models"].get(model_key(model_id)) or {}
    return sorted({DEFAULT_TIER, *entry.get("service_tiers", [])})


def tier_refusal(model_id: str, tier: str) -> str | None:
    """Why a model cannot be called at a service tier (None: it can). A model the table does not price is
    given the benefit of the doubt only for ``default``."""
    if tier == DEFAULT_TIER:
        return None
    offered = tiers_offered(model_id)
    if tier in offered:
        return None
    return (
        f"{model_key(model_id)} is not offered at the {tier!r} service tier (the price table lists "
        f"{', '.join(offered)}); choose one of those, or leave retry.service_tier at default"
    )


@dataclass(frozen=True)
class TokenPrice:
    """USD per 1,000 input and output tokens."""

    input: float
    output: float

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1000


@dataclass(frozen=True)
class ModelPrice:
    model: str
    on_demand: TokenPrice
    batch: TokenPrice
    as_of: str
    source: str

    def of(self, mode: Mode, tier: str = DEFAULT_TIER) -> TokenPrice:
        if mode is Mode.BATCH:
            return self.batch
        if tier == DEFAULT_TIER:
            return self.on_demand
        factor = service_tier(tier).factor
        return TokenPrice(self.on_demand.input * factor, self.on_demand.output * factor)

    def describe(self, mode: Mode = Mode.BATCH) -> str:
        p = self.of(mode)
        return (
            f"{self.model} {mode.value} ${p.input:g} in / ${p.output:g} out per 1k tokens ({self.source}, {self.as_of})"
        )


@functools.cache
def _table() -> dict:
    return json.loads(PRICES_FILE.read_text())


def listed_models() -> list[str]:
    """The base model ids this package knows: the price table's, and the batch models it has no price for."""
    return sorted(set(_table()["models"]) | LISTED_WITHOUT_PRICE)


def price_for(model_id: str, overrides: Mapping[str, Mapping[str, float]] | None = None) -> ModelPrice | None:
    """The price of a model id, inference profile or ARN; None when neither the file nor the overrides have it."""
    table = _table()
    base = model_key(model_id)
    entry = table["models"].get(base)
    override = dict((overrides or {}).get(model_id) or (overrides or {}).get(base) or {})
    unknown = set(override) - set(OVERRIDE_KEYS)
    if unknown:
        raise ValueError(f"price_overrides[{model_id!r}]: unknown key(s) {sorted(unknown)}; expected {OVERRIDE_KEYS}")
    if (
        entry is None
        and not {"on_demand_input", "on_demand_output"} <= set(override)
        and not {
            "batch_input",
            "batch_output",
        }
        <= set(override)
    ):
        return None
    listed = entry or {}
    on_demand = TokenPrice(
        override.get("on_demand_input", listed.get("on_demand", {}).get("input", 0.0)),
        override.get("on_demand_output", listed.get("on_demand", {}).get("output", 0.0)),
    )
    discount = table["batch_discount_default"]
    batch_listed = listed.get("batch") or {"input": on_demand.input * discount, "output": on_demand.output * discount}
    batch = TokenPrice(
        override.get("batch_input", batch_listed["input"]), override.get("batch_output", batch_listed["output"])
    )
    if not entry:  # overrides only: batch-only overrides imply the on-demand price from the discount
        if "on_demand_input" not in override:
            on_demand = TokenPrice(batch.input / discount, batch.output / discount)
    source = "price_overrides" if override else listed.get("source", "")
    return ModelPrice(base, on_demand, batch, listed.get("as_of", "") if not override else "configured", source)


def usd(amount: float | None) -> str:
    """Money for people: "$1.23" (more digits below a cent), or "cost unknown"."""
    if amount is None:
        return "cost unknown"
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"
