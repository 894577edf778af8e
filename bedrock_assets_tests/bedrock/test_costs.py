"""Estimates before submission and the bill, from plain values."""

from __future__ import annotations

import pytest

from bedrock_assets.bedrock.costs import Bill, TokenEstimate
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.prices import Mode, price_for, usd
from bedrock_assets_tests.helpers import CUSTOM_PRICE, priced_attempt


def test_an_estimate_by_hand():
    estimate = TokenEstimate.of(records=10, input_chars=4001, max_output_tokens=100, jsonl_bytes=6000)
    assert (estimate.input_tokens, estimate.output_expected, estimate.output_worst) == (1001, 250, 1000)
    assert estimate.input_worst == 6000  # the bound: the JSONL bytes
    cost = estimate.cost(price_for("my.model-v1", CUSTOM_PRICE))
    assert cost.expected == pytest.approx((1001 * 0.001 + 250 * 0.002) / 1000)
    assert cost.worst == pytest.approx((6000 * 0.001 + 1000 * 0.002) / 1000)


def test_every_record_costs_a_token_and_short_or_wide_text_stays_within_the_bound():
    # 3,000 two-character records: characters / 4 would say 1,500 tokens; each is at least one
    short = TokenEstimate.of(records=3000, input_chars=6000, max_output_tokens=0, jsonl_bytes=3000 * 60)
    assert short.input_tokens == 3000 and short.input_worst == 180_000
    # CJK: a character is 3 UTF-8 bytes (and often a token); the JSONL bytes hold them
    cjk = "数据" * 50
    line = ('{"recordId":"r1","modelInput":{"inputText":"' + cjk + '"}}\n').encode()
    wide = TokenEstimate.of(records=1, input_chars=len(cjk), max_output_tokens=0, jsonl_bytes=len(line))
    assert wide.input_tokens == 25 and wide.input_worst >= len(cjk.encode()) > 100


def test_the_bill_prices_batch_and_on_demand_attempts_by_their_tokens():
    price = price_for("my.model-v1", CUSTOM_PRICE)
    bill = Bill.of(
        [priced_attempt("s00000", "arn:job", (1000, 500)), priced_attempt("r1-00000", "on-demand/x", (100, 50))], price
    )
    assert bill.batch == pytest.approx(0.001 + 0.001)
    assert bill.on_demand == pytest.approx(price.of(Mode.ON_DEMAND).cost(100, 50))
    assert bill.by_round(lambda k: 0 if k.startswith("s") else 1)[0]["round"] == 0


def test_the_bill_splits_by_lane_with_each_tier_at_its_own_price():
    from dataclasses import replace

    from bedrock_assets.ledger import JobCounts

    price = price_for("my.model-v1", CUSTOM_PRICE)
    batch = replace(priced_attempt("s00000", "arn:job", (1000, 500)), counts=JobCounts(100, 100, 100, 0))
    flex = replace(
        priced_attempt("r1-00000", "on-demand/x", (100, 50)), counts=JobCounts(10, 10, 10, 0), service_tier="flex"
    )
    plain = replace(priced_attempt("r1-00001", "on-demand/y", (100, 50)), counts=JobCounts(10, 10, 9, 1))
    stopped_unread = replace(priced_attempt("s00001", "arn:job2"), status=JobStatus.STOPPED)  # nothing processed
    bill = Bill.of([batch, flex, plain, stopped_unread], price)
    standard = price.of(Mode.ON_DEMAND).cost(100, 50)
    assert price.of(Mode.ON_DEMAND, "flex").cost(100, 50) == pytest.approx(standard * 0.5)
    assert bill.on_demand == pytest.approx(standard * 1.5)
    assert bill.by_lane() == [
        {"lane": "batch", "records": 100, "cost": usd(bill.batch)},
        {"lane": "on demand (default)", "records": 10, "cost": usd(standard)},
        {"lane": "on demand (flex)", "records": 10, "cost": usd(standard * 0.5)},
    ]
