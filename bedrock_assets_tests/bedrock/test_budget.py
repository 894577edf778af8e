"""The budget: spent by the bill, committed by the worst case, and what does not fit waits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bedrock_assets.bedrock.budget import BUDGET_HELD, Budget
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.prices import price_for
from bedrock_assets.bedrock.submission import Action, ShardToSubmit, decide_submissions
from bedrock_assets_tests.helpers import CUSTOM_PRICE, priced_attempt


def test_a_budget_counts_the_bill_of_finished_jobs_and_the_worst_case_of_running_ones():
    price = price_for("my.model-v1", CUSTOM_PRICE)
    attempts = [
        priced_attempt("s00000", "arn:1", (1000, 500)),  # spent 0.002
        priced_attempt("s00001", "arn:2", worst=0.01),  # committed
        replace(priced_attempt("s00002", None, worst=5.0), status=JobStatus.QUEUED),  # no job: commits nothing
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
