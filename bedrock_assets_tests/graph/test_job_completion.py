"""The completion sensor: what a tick requests, decided from plain values, and the same on the local stack."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import boto3
import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.graph.job_completion import TickCursor, contiguous_groups, decide_tick
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.ledger import JobAttempt, JobCounts
from bedrock_assets.progress import run_partitions
from bedrock_assets.runner import execute_stage
from bedrock_assets_tests.helpers import (
    CLAUDE,
    dead_owner,
    foreign_job,
    ledger_of,
    pipeline_dict,
    run,
    tick,
)

SHARDS = [f"s{i:05d}" for i in range(6)]


def attempt(shard: str, status: JobStatus, n: int = 1) -> JobAttempt:
    return JobAttempt(
        pipeline="p",
        shard=shard,
        attempt=n,
        job_name=f"p-{shard}-d{n}",
        input_digest="d",
        model_id=CLAUDE,
        records=100,
        input_uri="",
        output_uri="",
        status=status,
        job_arn=None if status in (JobStatus.QUEUED, JobStatus.SUBMIT_FAILED) else f"arn:{shard}:{n}",
    )


def merges(decision) -> list[list[str]]:
    return [[a.shard for a in group] for group in decision.merge_groups]


# ---- decisions, without any service ---------------------------------------------------------


def test_finished_jobs_are_merged_in_consecutive_groups_and_running_ones_wait():
    latest = {s: attempt(s, JobStatus.COMPLETED) for s in SHARDS}
    latest["s00002"] = attempt("s00002", JobStatus.IN_PROGRESS)
    latest["s00004"] = attempt("s00004", JobStatus.SUBMIT_FAILED)
    decision = decide_tick(latest, SHARDS, merged={}, busy=set(), free_slots=0)
    assert merges(decision) == [["s00000", "s00001"], ["s00003", "s00004", "s00005"]]
    assert decision.submit == []


def test_a_shard_merged_for_its_current_attempt_is_not_merged_again_but_a_new_attempt_is():
    latest = {"s00000": attempt("s00000", JobStatus.COMPLETED), "s00001": attempt("s00001", JobStatus.EXPIRED, 2)}
    merged = {"s00000": "arn:s00000:1", "s00001": "arn:s00001:1"}  # s00001 was merged for attempt 1
    assert merges(decide_tick(latest, SHARDS[:2], merged, set(), 0)) == [["s00001"]]


def test_shards_a_run_is_working_on_are_left_to_it():
    latest = {s: attempt(s, JobStatus.COMPLETED) for s in SHARDS[:3]}
    assert merges(decide_tick(latest, SHARDS[:3], {}, busy={"s00001"}, free_slots=0)) == [["s00000"], ["s00002"]]


def test_queued_shards_are_submitted_in_order_as_far_as_slots_allow():
    latest = {s: attempt(s, JobStatus.QUEUED) for s in SHARDS[:4]}
    assert [a.shard for a in decide_tick(latest, SHARDS[:4], {}, set(), free_slots=2).submit] == ["s00000", "s00001"]
    assert decide_tick(latest, SHARDS[:4], {}, set(), free_slots=-3).submit == []


def test_shards_no_longer_in_the_plan_are_ignored():
    latest = {"s00009": attempt("s00009", JobStatus.COMPLETED)}
    assert merges(decide_tick(latest, SHARDS, {}, set(), 0)) == []


@pytest.mark.parametrize(
    "elapsed, poll_seconds, due",
    [(0.0, 30.0, False), (28.0, 30.0, False), (29.9, 30.0, True), (31.0, 30.0, True), (0.46, 0.5, True)],
)
def test_bedrock_is_polled_once_the_poll_interval_passed_give_or_take_a_ticks_jitter(elapsed, poll_seconds, due):
    assert TickCursor(polled_at=1000.0).poll_due(poll_seconds, 1000.0 + elapsed) is due


def test_contiguous_groups_respect_the_order_and_the_limit():
    items = ["s00005", "s00001", "s00002", "s00003", "s00000"]
    assert contiguous_groups(items, SHARDS, str, limit=2) == [["s00000", "s00001"], ["s00002", "s00003"], ["s00005"]]


def test_a_run_covers_its_partition_or_its_range():
    assert run_partitions({"dagster/partition": "s00003"}, SHARDS) == ["s00003"]
    tags = {ASSET_PARTITION_RANGE_START_TAG: "s00001", ASSET_PARTITION_RANGE_END_TAG: "s00003"}
    assert run_partitions(tags, SHARDS) == ["s00001", "s00002", "s00003"]
    assert run_partitions({}, SHARDS) == []


# ---- the sensor on the local stack -----------------------------------------------------------


def submit_all(defs, spec, instance) -> list[str]:
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions(f"{spec.name}__shards")
    execute_stage(defs, instance, spec.name, "submit", shards)
    return shards


def test_finished_jobs_are_requested_until_merged_with_a_stable_run_key(make_pipelines, instance, stack, bucket):
    stack.emulator.time_scale = 3600  # jobs stay in flight until expedited
    defs, (spec,) = make_pipelines([pipeline_dict("ticks", bucket)], rows=300)
    shards = submit_all(defs, spec, instance)
    jobs_key = dg.AssetKey(["ticks", "batch_jobs"])
    first = tick(defs, spec, instance)
    assert first.run_requests == [] and [e for e in first.asset_events if e.asset_key == jobs_key] == []

    stack.emulator.expedite()
    done = tick(defs, spec, instance)
    observed = [e for e in done.asset_events if e.asset_key == jobs_key]  # each job whose state changed
    assert len(observed) == 2 and {e.metadata["status"].value for e in observed} == {"Completed"}
    (finished,) = done.run_requests  # both shards in one partition-range run
    assert finished.job_name == "ticks__merge" and finished.partition_key is None
    assert finished.run_key.startswith("merge:s00000..s00001:")
    assert (finished.tags[ASSET_PARTITION_RANGE_START_TAG], finished.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        "s00000",
        "s00001",
    )
    assert finished.tags["bedrock_assets/pipeline"] == "ticks" and finished.tags["bedrock_assets/stage"] == "merge"
    (again,) = tick(defs, spec, instance).run_requests
    assert again.run_key == finished.run_key  # the daemon launches a run key once

    execute_stage(defs, instance, spec.name, "merge", shards)
    (publish,) = tick(defs, spec, instance).run_requests  # every shard merged, no round due: the dataset, from the tick
    assert publish.job_name == "ticks__publish" and publish.run_key.startswith("publish:")
    execute_stage(defs, instance, spec.name, "publish")
    quiet = tick(defs, spec, instance)
    assert quiet.run_requests == []
    assert (
        json.loads(quiet.cursor)["status"] == "[ticks] jobs: 2 Completed; records processed 300/300; merged 2/2 shards"
    )


def test_between_bedrock_polls_a_tick_follows_what_dagster_finished_without_asking_bedrock(
    make_pipelines, instance, stack, bucket
):
    stack.emulator.time_scale = 3600  # jobs stay in flight until expedited
    defs, (spec,) = make_pipelines([pipeline_dict("cadence", bucket)], rows=300)
    bedrock = defs.resources["bedrock"]
    defs.resources["bedrock"] = BedrockBatchResource(  # the next poll due in an hour
        **{**bedrock._get_non_default_public_field_values(), "poll_seconds": 3600}
    )
    shards = submit_all(defs, spec, instance)
    before = stack.emulator.control_plane_calls()["ListModelInvocationJobs"]  # the submissions' own

    def lists() -> int:
        return stack.emulator.control_plane_calls()["ListModelInvocationJobs"] - before

    first = tick(defs, spec, instance)  # a first tick asks Bedrock: both jobs in flight
    assert first.run_requests == [] and lists() == 1

    stack.emulator.expedite()
    between = tick(defs, spec, instance, first.cursor)  # within poll_seconds: the ledger's states
    assert between.run_requests == [] and lists() == 1

    cursor = json.loads(between.cursor)
    due = json.dumps({**cursor, "polled_at": cursor["polled_at"] - 3600})  # an hour later
    polled = tick(defs, spec, instance, due)
    assert [r.job_name for r in polled.run_requests] == ["cadence__merge"] and lists() == 2

    execute_stage(defs, instance, spec.name, "merge", shards)
    (publish,) = tick(defs, spec, instance, polled.cursor).run_requests  # at once, from the ledger and the instance
    assert publish.job_name == "cadence__publish" and lists() == 2


def test_a_merge_run_in_progress_elsewhere_is_not_requested_again(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("elsewhere", bucket)], rows=300)
    submit_all(defs, spec, instance)
    instance.add_run(
        dg.DagsterRun(
            job_name="elsewhere__merge",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "s00000"},
        )
    )
    (request,) = tick(defs, spec, instance).run_requests
    assert request.partition_key == "s00001"


def test_queued_shards_are_submitted_when_other_teams_free_their_slots(make_pipelines, instance, stack, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("slots", bucket)], rows=450)
    defs.resources["bedrock"] = BedrockBatchResource(quota_overrides={CLAUDE: {"max_concurrent_jobs": 3}})
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions("slots__shards")
    stack.emulator.time_scale = 3600
    others = [foreign_job(bucket, f"other-{bucket}-{i}") for i in range(2)]
    execute_stage(defs, instance, spec.name, "submit", shards)
    assert tick(defs, spec, instance).run_requests == []  # no free slot

    bedrock = boto3.client("bedrock")
    for arn in others:  # the other team stops its jobs: their slots free once they reach Stopped
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert tick(defs, spec, instance).run_requests == []  # Stopping still holds a slot
    for arn in others:
        stack.emulator.expedite(arn)
    (submit,) = tick(defs, spec, instance).run_requests  # both queued shards in one range run
    assert submit.job_name == "slots__submit" and submit.tags["bedrock_assets/shards"] == "s00001..s00002"
    execute_stage(defs, instance, spec.name, "submit", ["s00001", "s00002"])
    statuses = {k: v.status for k, v in ledger_of(defs).latest_by_shard("slots").items()}
    assert set(statuses.values()) == {JobStatus.SUBMITTED}


def test_after_bedrock_refuses_for_capacity_a_create_is_tried_only_once_a_slot_may_have_come_free():
    from datetime import datetime

    refused = "ServiceQuotaExceededException: too many jobs"
    latest = {
        s: replace(attempt(s, JobStatus.QUEUED), message=refused, queued_at="2026-11-27T00:00:05+00:00")
        for s in SHARDS[:4]
    }
    latest["s00004"] = replace(attempt("s00004", JobStatus.IN_PROGRESS), submitted_at="2026-11-27T00:00:01+00:00")

    def submitted(at: str) -> list[str]:
        now = datetime.fromisoformat(at)
        return [a.shard for a in decide_tick(latest, SHARDS, {}, set(), free_slots=10, now=now).submit]

    assert submitted("2026-11-27T00:00:20+00:00") == []  # nothing has ended since: every create would be refused
    assert submitted("2026-11-27T00:01:05+00:00") == ["s00000"]  # a minute on: one probe (others' jobs end too)
    latest["s00004"] = replace(latest["s00004"], status=JobStatus.COMPLETED, end_time="2026-11-27T00:00:15+00:00")
    assert submitted("2026-11-27T00:00:20+00:00") == ["s00000"]  # one of ours ended: one probe at once
    # a create that succeeded after the refusal proves a slot free: full speed again
    latest["s00005"] = replace(attempt("s00005", JobStatus.SUBMITTED), submitted_at="2026-11-27T00:00:09+00:00")
    assert len(decide_tick(latest, SHARDS, {}, set(), free_slots=10).submit) == 4


def test_the_policy_renews_an_expired_job_only_before_it_is_merged_and_only_if_it_processed_nothing():
    expired = attempt("s00000", JobStatus.EXPIRED)
    partly = replace(attempt("s00001", JobStatus.EXPIRED), counts=JobCounts(200, 80, 80, 0))
    done = attempt("s00002", JobStatus.EXPIRED)
    latest = {a.shard: a for a in (expired, partly, done)}
    decision = decide_tick(latest, SHARDS[:3], {"s00002": done.identity}, set(), 10, max_job_attempts=2)
    assert [a.shard for a in decision.submit] == ["s00000"]  # a new attempt for the job that never ran
    assert merges(decision) == [["s00001"]]  # what it answered is kept; the rest goes to the retry rounds
    # with the policy off (one attempt), the expired job is merged as it is
    assert merges(decide_tick(latest, SHARDS[:1], {}, set(), 10, max_job_attempts=1)) == [["s00000"]]


def test_the_pipeline_status_is_observed_on_merged_dataset_as_it_changes(make_pipelines, instance, stack, bucket):
    stack.configure(time_scale=1)  # jobs in flight for 4 s: a tick sees them even on a busy machine
    defs, (spec,) = make_pipelines([pipeline_dict("glance", bucket)], rows=300)
    run(defs, spec, instance)
    records = instance.fetch_observations(PipelineKeys("glance").merged_dataset, limit=50).records  # newest first
    seen = [r.asset_observation.metadata["jobs_by_status"].value for r in records]
    in_flight = {"Submitted", "Validating", "Scheduled", "InProgress"}
    assert any(set(jobs) & in_flight for jobs in seen) and {"Completed": 2} in seen  # seen running, then done
    newest = records[0].asset_observation.metadata
    assert (newest["records_processed"].value, newest["records_total"].value, newest["shards"].value) == (300, 300, 2)


def lost_run(instance: dg.DagsterInstance, job: str, shards: list[str]) -> str:
    """A run left STARTED in the instance by a process that was killed (SIGKILL during its step)."""
    from dagster._core.test_utils import create_run_for_test

    from bedrock_assets.keys import TAG_OWNER, partition_tags

    tags = {**partition_tags(shards), TAG_OWNER: dead_owner()}
    return create_run_for_test(instance, job_name=job, status=dg.DagsterRunStatus.STARTED, tags=tags).run_id


def test_a_merge_run_whose_process_died_holds_no_shard_and_its_merge_is_requested_anew(
    make_pipelines, instance, bucket
):
    defs, (spec,) = make_pipelines([pipeline_dict("deadmerge", bucket)], rows=300)
    shards = submit_all(defs, spec, instance)
    killed = lost_run(instance, "deadmerge__merge", shards)
    (request,) = tick(defs, spec, instance).run_requests  # the daemon's tick releases it and asks again
    assert request.job_name == "deadmerge__merge" and request.run_key.endswith(":lost1")
    released = instance.get_run_by_id(killed)
    assert released.status is dg.DagsterRunStatus.FAILURE and released.tags["bedrock_assets/owner_gone"] == "true"
    assert tick(defs, spec, instance).run_requests[0].run_key == request.run_key  # stable from then on

    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)


def test_a_run_of_a_live_process_keeps_its_shards(make_pipelines, instance, bucket):
    from dagster._core.test_utils import create_run_for_test

    from bedrock_assets.keys import TAG_OWNER, partition_tags
    from bedrock_assets.processes import OWNER

    defs, (spec,) = make_pipelines([pipeline_dict("livemerge", bucket)], rows=300)
    shards = submit_all(defs, spec, instance)
    tags = {**partition_tags(shards), TAG_OWNER: OWNER}
    running = create_run_for_test(instance, job_name="livemerge__merge", status=dg.DagsterRunStatus.STARTED, tags=tags)
    assert tick(defs, spec, instance).run_requests == []  # a merge is under way
    assert instance.get_run_by_id(running.run_id).status is dg.DagsterRunStatus.STARTED


def test_a_claim_whose_submitter_is_gone_is_submitted_again_whatever_the_slots():
    claimed = replace(attempt("s00000", JobStatus.SUBMITTING), claimed_by="gone")
    waiting = attempt("s00001", JobStatus.QUEUED)
    latest = {a.shard: a for a in (claimed, waiting)}
    full = decide_tick(latest, SHARDS[:2], {}, set(), free_slots=0, stale_claims=frozenset({"s00000"}))
    assert [a.shard for a in full.submit] == ["s00000"]  # resolving it attaches the job its create made, or queues
    held = decide_tick(latest, SHARDS[:2], {}, set(), free_slots=0)
    assert held.submit == []  # a live submitter's claim is left alone
