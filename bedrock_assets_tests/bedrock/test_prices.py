"""Prices as data: batch at half the on-demand price unless listed, overrides, and no price is no cost."""

from __future__ import annotations

import pytest

from bedrock_assets.bedrock.costs import Bill, TokenEstimate
from bedrock_assets.bedrock.prices import price_for, usd
from bedrock_assets_tests.helpers import CUSTOM_PRICE as CUSTOM


def test_the_batch_price_defaults_to_half_the_on_demand_price_and_overrides_win():
    price = price_for("my.model-v1", {"my.model-v1": {"on_demand_input": 0.004, "on_demand_output": 0.008}})
    assert (price.batch.input, price.batch.output) == (0.002, 0.004)
    only_batch = price_for("my.model-v1", CUSTOM)
    assert (only_batch.batch.input, only_batch.on_demand.input) == (0.001, 0.002)
    with pytest.raises(ValueError, match="unknown key"):
        price_for("my.model-v1", {"my.model-v1": {"input": 1.0}})


def test_a_model_without_a_price_has_no_cost_not_zero():
    assert price_for("anthropic.claude-not-a-real-model-v9:0") is None
    assert TokenEstimate.of(100, 4000, 512, 8000).cost(None) is None
    assert usd(None) == "cost unknown" and Bill.of([], None).total is None


def test_listed_models_resolve_through_profiles_and_arns():
    base = price_for("anthropic.claude-3-5-haiku-20241022-v1:0")
    assert base is not None and base.batch.input > 0 and base.as_of and base.source
    assert price_for("us.anthropic.claude-3-5-haiku-20241022-v1:0") == base
    arn = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"
    assert price_for(arn) == base


def test_titan_embeddings_are_priced():
    price = price_for("amazon.titan-embed-text-v2:0")
    assert price is not None and price.batch.input > 0 and price.batch.output == 0


def test_service_tiers_scale_the_on_demand_price_and_only_offered_tiers_are_allowed():
    from bedrock_assets.bedrock.prices import Mode, service_tier, tier_refusal, tiers_offered

    nova = price_for("amazon.nova-pro-v1:0")
    assert nova is not None
    assert nova.of(Mode.ON_DEMAND, "priority").input == pytest.approx(nova.on_demand.input * 1.75)
    assert nova.of(Mode.BATCH, "flex") == nova.batch  # a tier is an on-demand matter
    assert tiers_offered("us.amazon.nova-pro-v1:0") == ["default", "flex", "priority"]
    assert tier_refusal("amazon.nova-pro-v1:0", "flex") is None
    assert "not offered at the 'priority' service tier" in (tier_refusal("cohere.embed-english-v3", "priority") or "")
    assert tier_refusal("cohere.embed-english-v3", "default") is None
    assert service_tier("flex").as_of == "unverified"  # says so until real figures replace the placeholder
    with pytest.raises(ValueError, match="unknown service tier 'turbo'"):
        service_tier("turbo")
