"""When a retry round is due, and what it is called: decisions from plain values."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.progress import MergedMark, RoundProgress
from bedrock_assets.spec import RetrySpec


def attempt(shard: str, status: JobStatus = JobStatus.COMPLETED) -> JobAttempt:
    return JobAttempt("p", shard, 1, f"p-{shard}-x", "d", "m", 150, "s3://b/i", "s3://b/o", status, f"arn:{shard}")


def progress(partitions, merged_retriable: dict[str, int], unmerged: tuple[str, ...] = ()) -> RoundProgress:
    latest = {k: attempt(k) for k in partitions}
    marks = {k: MergedMark(latest[k].identity, n) for k, n in merged_retriable.items() if k not in unmerged}
    return RoundProgress.of(partitions, latest, marks)


def test_the_latest_round_is_the_one_that_counts():
    p = progress(["s00000", "s00001", "r1-00000"], {"s00000": 50, "s00001": 70, "r1-00000": 3})
    assert (p.round, p.keys, p.retriable, p.all_merged) == (1, ["r1-00000"], 3, True)


@pytest.mark.parametrize(
    "retriable, unmerged, retry, due",
    [
        (120, (), RetrySpec(), True),  # a batch round
        (30, (), RetrySpec(), True),  # below the minimum: on demand
        (30, (), RetrySpec(small_remainder="leave"), False),
        (0, (), RetrySpec(), False),  # nothing to retry
        (120, ("s00001",), RetrySpec(), False),  # wait until every shard of the round is merged
        (120, (), RetrySpec(max_rounds=0), False),
    ],
)
def test_a_round_is_due_only_when_it_would_send_something(retriable, unmerged, retry, due):
    p = progress(["s00000", "s00001"], {"s00000": retriable, "s00001": 0}, unmerged)
    assert p.next_round_due(retry, min_records=100) is due


def test_rounds_stop_at_max_rounds():
    p = progress(["s00000", "r1-00000", "r2-00000"], {"r2-00000": 5})
    assert p.next_round_due(RetrySpec(max_rounds=2), 100) is False
    assert p.next_round_due(RetrySpec(max_rounds=3), 100) is True


def test_the_basis_changes_when_a_shard_of_the_round_gets_another_job():
    partitions = ["s00000", "s00001"]
    latest = {k: attempt(k) for k in partitions}
    marks = {k: MergedMark(a.identity, 1) for k, a in latest.items()}
    before = RoundProgress.of(partitions, latest, marks).basis
    latest["s00001"] = replace(latest["s00001"], attempt=2, job_arn="arn:other")
    assert RoundProgress.of(partitions, latest, marks).basis != before


def test_the_status_line_says_how_many_records_were_sent_again_in_retry_rounds():
    from bedrock_assets.ledger import JobCounts
    from bedrock_assets.progress import PipelineStatus

    done = JobCounts(processed=150, succeeded=150)
    latest = {
        "s00000": replace(attempt("s00000"), counts=done),
        "s00001": replace(attempt("s00001"), counts=done),
        "r1-00000": replace(attempt("r1-00000"), records=7, counts=JobCounts(processed=7, succeeded=7)),
    }
    status = PipelineStatus.of(list(latest), latest, {k: a.identity for k, a in latest.items()})
    assert status.line("p") == (
        "[p] jobs: 3 Completed; records processed 307/307 (300 rows + 7 sent again in retry rounds); merged 3/3 shards"
    )
    first_pass = PipelineStatus.of(["s00000"], latest, {})
    assert first_pass.line("p") == "[p] jobs: 1 Completed; records processed 150/150; merged 0/1 shards"


def test_the_pace_is_the_rate_of_the_jobs_in_progress_and_the_eta_what_is_left_at_it():
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from bedrock_assets.bedrock.metrics import Backlog
    from bedrock_assets.bedrock.prices import price_for
    from bedrock_assets.ledger import JobCounts
    from bedrock_assets.progress import Pace
    from bedrock_assets_tests.helpers import CUSTOM_PRICE, priced_attempt

    now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    started = (now - timedelta(minutes=10)).isoformat()
    running = replace(priced_attempt("s0", "arn:a", worst=0.5), counts=JobCounts(1000, 600), started_at=started)
    done = replace(priced_attempt("s1", "arn:b", (1000, 500)), counts=JobCounts(1000, 1000, 1000, 0))
    queued = replace(priced_attempt("s2", None), status=JobStatus.QUEUED, records=200)
    pace = Pace.of([running, done, queued], now, price_for("my.model-v1", CUSTOM_PRICE))
    assert pace.per_second == 1.0 and pace.remaining == 400 + 200  # 600 records in 10 minutes
    assert pace.eta == timedelta(seconds=600)
    assert pace.spent == 0.002 and pace.committed == 0.5  # the finished job's tokens; the running one at worst
    assert pace.text() == "60 records/min, ETA 10m00s; spent $0.0020, $0.50 at most in flight"
    assert pace.metadata()["eta_seconds"] == 600
    # nothing of ours processes: the ETA is the model's batch backlog drained at its token rate
    waiting = Pace.of([queued, done], now, None)
    assert waiting.eta is None and waiting.text().startswith("0 records/min, ETA -; spent cost unknown")
    backlog = Backlog("my.model-v1", pending_records=3000, input_tokens_per_minute=30_000)
    drained = waiting.with_backlog(backlog, [done])  # 1 input token per record so far: 30,000 records/min
    assert drained.eta == timedelta(seconds=6)
    assert "ETA ~6s (the model's batch backlog drained at its rate)" in drained.text()


def test_past_a_deadlines_cutoff_one_round_more_is_due_whatever_the_remainder_setting():
    last = progress(["s00000", "r1-00000", "r2-00000"], {"r2-00000": 40})
    leave = RetrySpec(max_rounds=2, small_remainder="leave")
    assert not last.next_round_due(leave, min_records=100)  # rounds used up, and too few to leave on demand
    assert last.next_round_due(leave, min_records=100, past_cutoff=True)  # the cutoff's records get their answer
    beyond = progress(["s00000", "r1-00000", "r2-00000", "r3-00000"], {"r3-00000": 40})
    assert not beyond.next_round_due(leave, min_records=100, past_cutoff=True)  # one round more, not endless


def test_merge_marks_are_fetched_once_per_event_and_the_later_event_of_a_shard_wins(tmp_path, monkeypatch):
    import dagster as dg

    from bedrock_assets.progress import latest_merges

    key = dg.AssetKey(["p", "merged_results"])
    instance = dg.DagsterInstance.local_temp(str(tmp_path))

    def merged(shard: str, job: str, retriable: int = 0, observed: bool = False) -> None:
        meta = MergedMark(job, retriable).metadata()
        kind = dg.AssetObservation if observed else dg.AssetMaterialization
        instance.report_runless_asset_event(kind(asset_key=key, partition=shard, metadata=meta))

    fetched: list[int] = []
    for name in ("fetch_materializations", "fetch_observations"):
        real = getattr(dg.DagsterInstance, name)

        def spy(self, records_filter, limit, *args, _real=real, **kwargs):
            fetched.append(len(records_filter.storage_ids or []))
            return _real(self, records_filter, limit, *args, **kwargs)

        monkeypatch.setattr(dg.DagsterInstance, name, spy)
    for n in range(30):
        merged(f"s{n:05d}", f"job-{n}")
    assert latest_merges(instance, key)["s00007"] == MergedMark("job-7")
    assert sum(fetched) == 30
    fetched.clear()
    again = dg.DagsterInstance.from_ref(instance.get_ref())  # a daemon's next tick: a new object, the same storage
    assert len(latest_merges(again, key)) == 30
    assert sum(fetched) == 0
    merged("s00003", "job-3b", retriable=4)
    merged("s00004", "job-4-empty", observed=True)  # a job without output: an observation, later than its merge
    marks = latest_merges(again, key)
    assert sum(fetched) == 2
    assert marks["s00003"] == MergedMark("job-3b", 4)
    assert marks["s00004"] == MergedMark("job-4-empty")
    assert marks["s00005"] == MergedMark("job-5")
