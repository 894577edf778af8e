"""The deadline's decisions from plain values: the deadline, the throughput, the cutoff, what is stopped there,
and which jobs stalled."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow.compute as pc
import pytest

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import ON_DEMAND_ARN
from bedrock_assets.deadline import (
    DEFAULT_RECORDS_PER_MINUTE_PER_CALL,
    DeadlineView,
    Throughput,
    cutoff_actions,
    deadline_of,
    load_cutoff,
    projected_end,
    stall_reason,
)
from bedrock_assets.durations import describe, parse_duration
from bedrock_assets.graph.batch_jobs import PROGRESS_CHECK
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.ledger import JobAttempt, JobCounts
from bedrock_assets.runner import run_pipelines
from bedrock_assets.spec import PipelineSpec, SpecError
from bedrock_assets_tests.helpers import job, ledger_of, one_spec, pipeline_dict, read_parquet, step_of

T0 = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def spec(**deadline: object) -> PipelineSpec:
    return one_spec(pipeline_dict("p", "bkt", deadline=deadline, retry={"on_demand_concurrency": 5}))


def attempt(
    shard: str,
    status: JobStatus,
    records: int = 100,
    processed: int = 0,
    started: datetime | None = None,
    progressed: datetime | None = None,
    submitted: datetime | None = None,
    created: datetime = T0,
) -> JobAttempt:
    a = replace(job(shard, status, arn=f"arn:job/{shard}"), records=records)
    return replace(
        a,
        counts=JobCounts(records if status.is_bedrock else 0, processed),
        started_at=iso(started) if started else None,
        progressed_at=iso(progressed) if progressed else None,
        submitted_at=iso(submitted) if submitted else None,
        created_at=iso(created),
    )


def test_durations_read_as_people_write_them():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert describe(timedelta(minutes=125)) == "2h05m"
    with pytest.raises(ValueError, match="not a duration.*e.g. 90s, 45m, 6h"):
        parse_duration("6 hours")


def test_the_spec_refuses_a_deadline_it_cannot_keep(tmp_path):
    with pytest.raises(SpecError, match="set one of deadline.within .* not both"):
        one_spec(pipeline_dict("p", "bkt", deadline={"within": "6h", "at": "2026-12-24T06:00:00Z"}))
    with pytest.raises(SpecError, match="attributes.deadline.at: .*has no time zone"):
        one_spec(pipeline_dict("p", "bkt", deadline={"at": "2026-12-24T06:00:00"}))
    with pytest.raises(SpecError, match="attributes.deadline.within: .*not a duration"):
        one_spec(pipeline_dict("p", "bkt", deadline={"within": "soon"}))
    with pytest.raises(SpecError, match="attributes.stall_after: .*longer than 0s"):
        one_spec(pipeline_dict("p", "bkt", stall_after="0s"))
    assert not one_spec(pipeline_dict("p", "bkt")).deadline.active  # no deadline unless one is set


def test_a_service_tier_the_model_is_not_offered_at_is_refused_at_load():
    with pytest.raises(SpecError, match="retry.service_tier: .*claude-3-5-haiku.* not offered at the 'flex'"):
        one_spec(pipeline_dict("p", "bkt", retry={"service_tier": "flex"}))
    nova = one_spec(pipeline_dict("p", "bkt", model="amazon.nova-pro-v1:0", retry={"service_tier": "flex"}))
    assert nova.retry.service_tier == "flex"


def test_the_deadline_is_at_or_within_the_first_job():
    assert deadline_of(spec(at="2026-12-24T06:00:00+01:00"), []) == datetime(2026, 12, 24, 5, 0, tzinfo=UTC)
    attempts = [attempt("s1", JobStatus.QUEUED, created=T0 + timedelta(minutes=5)), attempt("s0", JobStatus.QUEUED)]
    assert deadline_of(spec(within="6h"), attempts) == T0 + timedelta(hours=6)  # from the earliest job
    assert deadline_of(spec(within="6h"), []) is None  # nothing submitted yet: nothing to count from


def test_throughput_is_measured_from_on_demand_answers_else_assumed():
    assumed = Throughput.of(spec(within="1h"), [])
    assert not assumed.measured and assumed.per_second * 60 == DEFAULT_RECORDS_PER_MINUTE_PER_CALL * 5
    assert Throughput.of(spec(within="1h", on_demand_records_per_minute=600), []).per_second == 10
    answered = replace(
        attempt("r1-00000", JobStatus.COMPLETED, records=300, processed=300, started=T0),
        job_arn=ON_DEMAND_ARN + "p-r1",
        end_time=iso(T0 + timedelta(seconds=60)),
    )
    batch = attempt("s0", JobStatus.COMPLETED, records=5000, processed=5000, started=T0)  # not on demand
    measured = Throughput.of(spec(within="1h"), [answered, batch])
    assert measured.measured and measured.per_second == 5


def test_the_cutoff_leaves_time_to_answer_the_rest_on_demand():
    s = spec(within="2h", margin="10m", on_demand_records_per_minute=100)
    latest = [
        attempt("s0", JobStatus.IN_PROGRESS, records=1000, processed=400, started=T0),  # 600 left
        attempt("s1", JobStatus.QUEUED, records=400),
    ]
    view = DeadlineView.of(s, latest, latest)
    assert view.deadline == T0 + timedelta(hours=2) and view.remaining == 1000
    assert view.cutoff == T0 + timedelta(hours=2) - timedelta(minutes=10) - timedelta(minutes=10)
    assert not view.due(T0 + timedelta(minutes=99)) and view.due(T0 + timedelta(minutes=100))
    done = [attempt("s0", JobStatus.COMPLETED, records=1000, processed=1000)]
    assert not DeadlineView.of(s, done, done).due(T0 + timedelta(hours=3))  # nothing left to finish


def test_at_the_cutoff_what_cannot_finish_in_batch_is_stopped():
    now = T0 + timedelta(minutes=60)
    s = spec(within="2h", margin="10m", on_demand_records_per_minute=100)
    fast = attempt("s0", JobStatus.IN_PROGRESS, 1000, 900, started=T0, progressed=now)  # ends in ~7 min
    slow = attempt("s1", JobStatus.IN_PROGRESS, 2000, 200, started=T0, progressed=now)  # 9 h more at its rate
    idle = attempt("s2", JobStatus.IN_PROGRESS, 1000, 0, started=now - timedelta(minutes=5))
    waiting = attempt("s3", JobStatus.SCHEDULED, 500, submitted=T0)
    queued = attempt("s4", JobStatus.QUEUED, 200)
    done = attempt("s5", JobStatus.COMPLETED, 100, 100)
    latest = [fast, slow, idle, waiting, queued, done]
    view = DeadlineView.of(s, latest, latest)
    actions = cutoff_actions(latest, now, view, timedelta(hours=1))
    stopped = {a.shard: why for a, why in actions.stop}
    assert actions.on_demand == ["s4"]
    # 3,500 records go on demand (35 min at 100/min): the fast one ends before then and stays in batch
    assert set(stopped) == {"s1", "s2", "s3"}
    assert stopped["s3"] == "Scheduled at the batch cutoff"
    assert stopped["s2"] == "InProgress with nothing processed yet to project its end by"
    assert stopped["s1"].startswith("projected to end ")
    assert projected_end(fast, now) == now + timedelta(seconds=100 / (900 / 3600))


def test_a_job_kept_for_batch_must_leave_time_for_what_the_cutoff_sends_on_demand():
    now = T0 + timedelta(minutes=60)
    s = spec(within="2h", margin="10m", on_demand_records_per_minute=100)
    # ends in 20 min at its rate, and the deadline minus margin is 50 min away: kept alone
    job_a = attempt("s0", JobStatus.IN_PROGRESS, 4000, 3000, started=T0, progressed=now)
    view = DeadlineView.of(s, [job_a], [job_a])
    assert cutoff_actions([job_a], now, view, timedelta(hours=1)).stop == []
    # with 4,000 queued records to answer on demand first (40 min at 100/min), it would end too late
    queued = attempt("s1", JobStatus.QUEUED, 4000)
    view = DeadlineView.of(s, [job_a, queued], [job_a, queued])
    assert [a.shard for a, _ in cutoff_actions([job_a, queued], now, view, timedelta(hours=1)).stop] == ["s0"]


def test_stalled_jobs():
    now = T0 + timedelta(hours=3)
    hour = timedelta(hours=1)
    moving = attempt("s0", JobStatus.IN_PROGRESS, 1000, 500, started=T0, progressed=now - timedelta(minutes=5))
    stuck = attempt("s1", JobStatus.IN_PROGRESS, 1000, 500, started=T0, progressed=now - timedelta(minutes=90))
    queued_long = attempt("s2", JobStatus.SCHEDULED, submitted=now - timedelta(hours=2))
    assert stall_reason(moving, now, hour) is None
    assert stall_reason(stuck, now, hour) == "InProgress, 500/1000 records, none processed for 1h30m"
    assert stall_reason(queued_long, now, hour) == "Scheduled for 2h00m"
    assert stall_reason(attempt("s3", JobStatus.COMPLETED), now, hour) is None
    # under a deadline, a stalled job is one that cannot finish in time, whatever its average rate
    s = spec(within="6h", margin="10m", on_demand_records_per_minute=100)
    view = DeadlineView.of(s, [stuck], [stuck])
    assert [why for _, why in cutoff_actions([stuck], now, view, hour).stop] == [
        "stalled (InProgress, 500/1000 records, none processed for 1h30m)"
    ]


# ---- end to end on the local stack ----------------------------------------------------------------


def test_a_deadline_with_stuck_jobs_is_met_on_demand_from_its_cutoff(make_pipelines, instance, stack, bucket, tmp_path):
    """3 shards; s00001's job never leaves Scheduled and s00002's stalls InProgress. At the cutoff both are
    stopped and their rows answered on demand; every row is answered once.

    No wall-clock bound: the cutoff is asserted as the code computed it from the recorded first job, and the rest as
    the order of recorded events (how fast this machine answers 400 records on demand is not the code's decision)."""
    stack.configure(time_scale=0.5, hold_jobs_matching="-s00001-", stall_jobs_matching="-s00002-")
    attributes = pipeline_dict(
        "due",
        bucket,
        model="anthropic.claude-3-sonnet-20240229-v1:0",  # its batch metrics (account-wide) are this test's alone
        deadline={"within": "20s", "margin": "3s", "on_demand_records_per_minute": 6000},
        stall_after="3s",
    )
    defs, (spec,) = make_pipelines([attributes], rows=600)
    lines: list[str] = []
    (summary,) = run_pipelines(defs, [spec], instance, poll_seconds=0.05, timeout_seconds=120, log=lines.append)
    ledger = ledger_of(defs)
    attempts = ledger.attempts_of("due")
    first_job = min(datetime.fromisoformat(a.created_at or "") for a in attempts)
    cutoff = load_cutoff(step_of(spec, defs))
    assert cutoff is not None and cutoff.remaining == 400
    reached, deadline = datetime.fromisoformat(cutoff.reached_at), datetime.fromisoformat(cutoff.deadline)
    assert deadline == first_job + timedelta(seconds=20)  # within: counted from the first job the ledger recorded
    # the cutoff: deadline - margin - 400 unanswered records at the assumed 100 a second
    assert datetime.fromisoformat(cutoff.cutoff) == deadline - timedelta(seconds=3 + 4)
    assert "(assumed)" in cutoff.throughput
    assert reached >= datetime.fromisoformat(cutoff.cutoff)  # recorded once reached, not before
    assert (summary.rows, summary.succeeded, summary.failed, summary.within_error_limit) == (600, 600, 0, True)
    by_shard = {a.shard: a for a in attempts}
    assert {s: (a.status, a.stopped_by) for s, a in by_shard.items() if a.stopped_by} == {
        "s00001": (JobStatus.STOPPED, "cutoff"),
        "s00002": (JobStatus.STOPPED, "cutoff"),
    }
    assert by_shard["s00000"].status is JobStatus.COMPLETED  # finished in batch before the cutoff
    on_demand = [a for a in attempts if (a.job_arn or "").startswith(ON_DEMAND_ARN)]
    assert sum(a.counts.succeeded for a in on_demand) == 400  # the stuck shards' rows, each answered once
    # the order: the stuck jobs ended and the on-demand answers began only once the cutoff was reached
    stopped = [a for a in attempts if a.stopped_by]
    assert len(stopped) == 2 and all(datetime.fromisoformat(a.end_time or "") >= reached for a in stopped)
    assert on_demand and all(datetime.fromisoformat(a.created_at or "") >= reached for a in on_demand)
    assert summary.bedrock_calls.calls["CreateModelInvocationJob"] == 3  # no job created twice
    assert summary.report is not None
    assert {r["lane"]: int(r["records"]) for r in summary.report.cost_by_lane} == {
        "batch": 200,
        "on demand (default)": 400,
    }  # the bill by lane
    (cost,) = [line for line in summary.lines() if line.startswith("  cost: ")]
    assert "(batch 200 records $" in cost and ", on demand (default) 400 records $" in cost
    merged = read_parquet(stack.client("s3"), summary.merged_uri, tmp_path)
    assert pc.count_distinct(merged.column("record_id")).as_py() == merged.num_rows == 600
    assert merged.column("error_code").null_count == 600
    lanes = set(zip(*[merged.column(c).to_pylist() for c in ("shard", "job_arn")], strict=True))
    assert {s for s, arn in lanes if arn.startswith(ON_DEMAND_ARN)} == {"s00001", "s00002"}  # lineage: shard + answer
    assert {s for s, arn in lanes if not arn.startswith(ON_DEMAND_ARN)} == {"s00000"}
    # the stalled jobs were named by a WARN check while they sat; every run is green (the plan worked)
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(PipelineKeys("due").batch_jobs, PROGRESS_CHECK), limit=50
    )
    warned = [r.event.dagster_event.event_specific_data for r in history if r.event and r.event.dagster_event]
    stalled = [e for e in warned if not e.passed]
    assert stalled and all(e.severity == dg.AssetCheckSeverity.WARN for e in stalled)
    assert any("s00001" in e.description and "Scheduled for" in e.description for e in stalled)
    assert {r.status for r in instance.get_runs()} == {dg.DagsterRunStatus.SUCCESS}
    # the run's progress lines: the pace and where the deadline stands, before and after the cutoff
    progress = [line for line in lines if line.startswith("[due] jobs: ")]
    assert any("records/min, ETA" in line and ", batch cutoff in " in line for line in progress)
    assert any("past the batch cutoff: the rest is answered on demand" in line for line in progress)
