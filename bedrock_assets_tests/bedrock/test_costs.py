"""Prices as data, estimates before submission, budgets, and the bill: from plain values."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bedrock_assets.bedrock.budget import BUDGET_HELD, Budget
from bedrock_assets.bedrock.costs import Bill, TokenEstimate
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.prices import Mode, price_for, usd
from bedrock_assets.bedrock.submission import Action, ShardToSubmit, decide_submissions
from bedrock_assets.ledger import JobAttempt

CUSTOM = {"my.model-v1": {"batch_input": 0.001, "batch_output": 0.002}}


def attempt(shard: str, arn: str | None, tokens: tuple[int, int] | None = None, worst: float | None = None):
    return JobAttempt(
        "p", shard, 1, f"p-{shard}", "d", "my.model-v1", 100, "s3://b/i", "s3://b/o",
        JobStatus.COMPLETED if tokens else JobStatus.IN_PROGRESS, arn,
        input_tokens=tokens[0] if tokens else None, output_tokens=tokens[1] if tokens else None, worst_usd=worst,
    )  # fmt: skip


def test_the_batch_price_defaults_to_half_the_on_demand_price_and_overrides_win():
    price = price_for("my.model-v1", {"my.model-v1": {"on_demand_input": 0.004, "on_demand_output": 0.008}})
    assert (price.batch.input, price.batch.output) == (0.002, 0.004)
    only_batch = price_for("my.model-v1", CUSTOM)
    assert (only_batch.batch.input, only_batch.on_demand.input) == (0.001, 0.002)
    with pytest.raises(ValueError, match="unknown key"):
        price_for("my.model-v1", {"my.model-v1": {"input": 1.0}})


def test_a_model_without_a_price_has_no_cost_not_zero():
    assert price_for("anthropic.claude-not-a-real-model-v9:0") is None
    assert TokenEstimate.of(100, 4000, 512).cost(None) is None
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


def test_an_estimate_by_hand():
    estimate = TokenEstimate.of(records=10, input_chars=4001, max_output_tokens=100)
    assert (estimate.input_tokens, estimate.output_expected, estimate.output_worst) == (1001, 250, 1000)
    cost = estimate.cost(price_for("my.model-v1", CUSTOM))
    assert cost.expected == pytest.approx((1001 * 0.001 + 250 * 0.002) / 1000)
    assert cost.worst == pytest.approx((1001 * 0.001 + 1000 * 0.002) / 1000)


def test_the_bill_prices_batch_and_on_demand_attempts_by_their_tokens():
    price = price_for("my.model-v1", CUSTOM)
    bill = Bill.of([attempt("s00000", "arn:job", (1000, 500)), attempt("r1-00000", "on-demand/x", (100, 50))], price)
    assert bill.batch == pytest.approx(0.001 + 0.001)
    assert bill.on_demand == pytest.approx(price.of(Mode.ON_DEMAND).cost(100, 50))
    assert bill.by_round(lambda k: 0 if k.startswith("s") else 1)[0]["round"] == 0


def test_a_budget_counts_the_bill_of_finished_jobs_and_the_worst_case_of_running_ones():
    price = price_for("my.model-v1", CUSTOM)
    attempts = [
        attempt("s00000", "arn:1", (1000, 500)),  # spent 0.002
        attempt("s00001", "arn:2", worst=0.01),  # committed
        replace(attempt("s00002", None, worst=5.0), status=JobStatus.QUEUED),  # no job: commits nothing
    ]
    budget = Budget.of(0.05, attempts, price)
    assert (budget.spent, budget.committed) == (pytest.approx(0.002), 0.01)
    assert budget.hold_reason(0.03) is None
    held = budget.hold_reason(0.04)
    assert held.startswith(BUDGET_HELD) and "$0.0020 spent" in held and "$0.01 committed, $0.04 left" in held


def test_shards_beyond_the_budget_wait_and_the_ones_before_are_created():
    shards = [ShardToSubmit(f"s0000{i}", "d" * 64, 100, f"s3://b/{i}", f"s3://b/o{i}", worst_usd=1.0) for i in range(3)]
    decisions = decide_submissions(shards, {}, {}, 10, "p", budget=Budget(2.5))
    assert [d.action for d in decisions] == [Action.CREATE, Action.CREATE, Action.QUEUE]
    assert decisions[2].reason.startswith("budget_usd $2.50: $0.00 spent, $2.00 committed, $0.50 left")
    unpriced = replace(shards[0], worst_usd=None)
    (d,) = decide_submissions([unpriced], {}, {}, 10, "p", budget=Budget(100.0))
    assert d.action is Action.QUEUE and "no price" in d.reason
