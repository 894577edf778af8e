"""A pipeline's plan before anything is spent: records, bytes, tokens and the cost range, by hand."""

from __future__ import annotations

from bedrock_assets.bedrock.prices import Mode, price_for, usd
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.pipeline import Step
from bedrock_assets.plan import PipelinePlan, worst_cost
from bedrock_assets.shards import ShardIndex, ShardInfo
from bedrock_assets.storage import S3Access
from bedrock_assets_tests.helpers import CLAUDE, one_spec, pipeline_dict

INDEX = ShardIndex(["s3://b/in.parquet"], 302, 2, [ShardInfo("s00000", 151, 150, 9_000, "a", 40_000)] * 2)


def step(**overrides) -> Step:
    spec = one_spec(pipeline_dict("planned", "bkt", inference={"max_tokens": 100}, **overrides))
    return Step.of(spec, S3Access(None), BedrockBatchResource())


def test_the_plan_counts_tokens_at_four_characters_and_prices_them_at_the_batch_price():
    plan = PipelinePlan.of(step(budget_usd=1.0), INDEX)
    e = plan.estimate
    assert (e.records, e.input_tokens, e.output_worst, e.output_expected) == (300, 20_000, 30_000, 7_500)
    price = price_for(CLAUDE)
    assert price is not None
    worst = (20_000 * price.batch.input + 30_000 * price.batch.output) / 1000
    assert plan.estimate.cost(price).worst == worst
    lines = plan.lines()
    assert (
        lines[0]
        == "plan planned: 302 rows (2 rejected before submission) -> 300 records in 2 shards = 2 batch jobs, 18,000 bytes of JSONL"
    )
    assert lines[3].startswith("  cost at the batch price: $") and lines[3].endswith("; budget_usd $1.00")
    assert plan.metadata()["cost_worst_usd"] == round(worst, 10)


def test_on_demand_costs_more_and_an_unpriced_model_says_so():
    shard = INDEX.shards[0]
    adapter = step().adapter
    price = price_for(CLAUDE)
    assert price is not None
    on_demand = (shard.input_chars / 4 * price.on_demand.input + 150 * 100 * price.on_demand.output) / 1000
    assert worst_cost(shard, adapter, price, Mode.ON_DEMAND) == on_demand > worst_cost(shard, adapter, price)
    assert worst_cost(shard, adapter, None) is None
    unpriced = PipelinePlan(
        *[
            getattr(PipelinePlan.of(step(), INDEX), f)
            for f in ("name", "model_id", "max_tokens", "budget_usd", "shards", "estimate")
        ],
        None,
    )
    assert unpriced.lines()[-1].startswith(f"  cost unknown: no price for {CLAUDE}")


def test_resending_answers_cut_off_is_priced_per_thousand_records():
    labels = {"type": "object", "properties": {"label": {"type": "string"}}}
    plan = PipelinePlan.of(step(output_schema=labels, retry={"truncated_max_tokens": 400}), INDEX)
    price = price_for(CLAUDE)
    assert price is not None
    per_1000 = (1000 * (20_000 / 300) * price.batch.input + 1000 * 400 * price.batch.output) / 1000
    (line,) = plan.resend_line()
    assert (
        line
        == f"  structured answers cut off at max_tokens are sent once more with max_tokens 400: up to ${per_1000:.2f} per 1,000 such records"
    )
    assert line in plan.lines() and PipelinePlan.of(step(), INDEX).resend_line() == []


def test_under_a_deadline_the_plan_shows_the_cutoff_and_the_worst_case_all_on_demand():
    plan = PipelinePlan.of(
        step(
            model="amazon.nova-pro-v1:0",
            deadline={"within": "6h", "margin": "30m", "on_demand_records_per_minute": 60},
            retry={"service_tier": "flex"},
        ),
        INDEX,
    )
    price = price_for("amazon.nova-pro-v1:0")
    assert price is not None
    flex = plan.estimate.cost(price, Mode.ON_DEMAND, "flex")
    assert flex is not None and flex.worst == plan.estimate.cost(price, Mode.ON_DEMAND).worst * 0.5
    lines = plan.lines()
    assert (
        "  deadline within 6h of the first job, margin 30m: the batch cutoff falls 35m00s before it (the margin + "
        "300 records at 60 records/min on demand (assumed); it moves later as jobs process)"
    ) in lines
    assert f"  if the cutoff sends every record on demand (flex tier): {flex}" in lines
    assert plan.metadata()["cost_worst_all_on_demand_usd"] == round(flex.worst, 10)
    assert not any("deadline" in line for line in PipelinePlan.of(step(), INDEX).lines())


def test_the_plan_prices_the_canary_at_the_on_demand_price():
    plan = PipelinePlan.of(step(canary={"records": 3}), INDEX)
    price = price_for(CLAUDE)
    assert price is not None
    on_demand = plan.estimate.cost(price, Mode.ON_DEMAND)
    assert on_demand is not None
    share = 3 / 300
    line = f"  canary: 3 record(s) on demand before the first batch job: ~{usd(on_demand.expected * share)}, "
    assert f"{line}{usd(on_demand.worst * share)} at most" in plan.lines()
    assert not any("canary" in line for line in PipelinePlan.of(step(canary={"records": 0}), INDEX).lines())
