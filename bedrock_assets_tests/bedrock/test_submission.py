"""Submission: quota-aware (counting jobs that are not ours), idempotent, and never losing a shard."""

from __future__ import annotations

from dataclasses import replace

import boto3
import dagster as dg
import pyarrow.parquet as pq

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import job_name, request_token
from bedrock_assets.bedrock.resource import BedrockBatchResource, JobSummary
from bedrock_assets.bedrock.submission import Action, ShardToSubmit, decide_submissions
from bedrock_assets.graph.batch_jobs import PROGRESS_CHECK, SUBMITTED_CHECK
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.runner import execute_stage
from bedrock_assets.shards import load_shard_index
from bedrock_assets_tests.helpers import (
    CLAUDE,
    NO_RECOURSE,
    ROLE,
    dead_owner,
    foreign_job,
    ledger_of,
    pipeline_defs,
    pipeline_dict,
    run,
    step_of,
    tick,
)

# ---- decisions, without any service ---------------------------------------------------------


def shard(key: str, digest: str = "d" * 64) -> ShardToSubmit:
    return ShardToSubmit(key, digest, 150, f"s3://b/p/shards/{key}/input.jsonl", f"s3://b/p/jobs/{key}")


def attempt(s: ShardToSubmit, status: JobStatus, n: int = 1, arn: str | None = "arn:job") -> JobAttempt:
    return JobAttempt(
        pipeline="p",
        shard=s.shard,
        attempt=n,
        job_name=job_name("p", s.shard, s.digest, n),
        input_digest=s.digest,
        model_id=CLAUDE,
        records=s.records,
        input_uri=s.input_uri,
        output_uri=s.output_uri,
        status=status,
        job_arn=arn,
    )


def actions(decisions) -> list[tuple[str, str, int]]:
    return [(d.shard.shard, d.action.value, d.attempt) for d in decisions]


def test_free_slots_go_to_shards_in_order_and_the_rest_queue():
    shards = [shard(f"s0000{i}") for i in range(4)]
    assert actions(decide_submissions(shards, {}, {}, 2, "p")) == [
        ("s00000", "create", 1),
        ("s00001", "create", 1),
        ("s00002", "queue", 1),
        ("s00003", "queue", 1),
    ]
    assert {d.action for d in decide_submissions(shards, {}, {}, 0, "p")} == {Action.QUEUE}


def test_live_or_finished_jobs_reattach_and_take_no_slot():
    a, b, c = shard("s00000"), shard("s00001"), shard("s00002")
    latest = {"s00000": attempt(a, JobStatus.IN_PROGRESS), "s00001": attempt(b, JobStatus.COMPLETED)}
    assert actions(decide_submissions([a, b, c], latest, {}, 1, "p")) == [
        ("s00000", "re-attach", 1),
        ("s00001", "re-attach", 1),
        ("s00002", "create", 1),
    ]


def test_a_queued_attempt_is_reused_and_a_refused_submission_is_tried_again():
    a, b = shard("s00000"), shard("s00001")
    latest = {"s00000": attempt(a, JobStatus.QUEUED, arn=None), "s00001": attempt(b, JobStatus.SUBMIT_FAILED, arn=None)}
    assert actions(decide_submissions([a, b], latest, {}, 5, "p")) == [("s00000", "create", 1), ("s00001", "create", 2)]


def test_failed_expired_and_stopped_jobs_get_a_new_attempt_only_when_asked():
    shards = [shard("s00000"), shard("s00001"), shard("s00002"), shard("s00003")]
    ended = [JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.STOPPED, JobStatus.COMPLETED]
    latest = {s.shard: attempt(s, status) for s, status in zip(shards, ended)}
    assert {d.action for d in decide_submissions(shards, latest, {}, 5, "p")} == {Action.REATTACH}
    asked = decide_submissions(shards, latest, {}, 5, "p", resubmit=True)
    assert actions(asked) == [
        ("s00000", "create", 2),
        ("s00001", "create", 2),
        ("s00002", "create", 2),
        ("s00003", "re-attach", 1),
    ]  # a completed job is never paid for again


def test_the_resubmission_policy_renews_expired_and_transient_failures_up_to_the_cap_never_stopped():
    shards = [shard(f"s0000{i}") for i in range(5)]
    ended = [
        attempt(shards[0], JobStatus.EXPIRED),
        replace(attempt(shards[1], JobStatus.FAILED), message="Internal error while processing the job"),
        replace(attempt(shards[2], JobStatus.FAILED), message="The input file has an invalid JSON line 3"),
        replace(attempt(shards[3], JobStatus.STOPPED), message="Stop requested by user."),
        attempt(shards[4], JobStatus.EXPIRED, n=2),  # the cap of 2 attempts is reached
    ]
    latest = {a.shard: a for a in ended}
    assert actions(decide_submissions(shards, latest, {}, 5, "p", max_job_attempts=2)) == [
        ("s00000", "create", 2),
        ("s00001", "create", 2),
        ("s00002", "re-attach", 1),
        ("s00003", "re-attach", 1),
        ("s00004", "re-attach", 2),
    ]
    # a shard a stop dequeued (no job) stays stopped; only an explicit resubmit makes a new attempt
    dequeued = {"s00000": replace(attempt(shards[0], JobStatus.STOPPED, arn=None), message="dequeued")}
    assert actions(decide_submissions(shards[:1], dequeued, {}, 5, "p", max_job_attempts=2)) == [
        ("s00000", "re-attach", 1)
    ]
    assert actions(decide_submissions(shards[:1], dequeued, {}, 5, "p", resubmit=True)) == [("s00000", "create", 2)]
    # with the policy off (one attempt), nothing is renewed: reruns never create attempts outside it
    assert {d.action for d in decide_submissions(shards, latest, {}, 5, "p", max_job_attempts=1)} == {Action.REATTACH}
    # a retry round's job is not renewed: its records go to the next round
    retry = shard("r1-00000")
    failed = {"r1-00000": replace(attempt(retry, JobStatus.FAILED), message="Internal error while processing the job")}
    assert actions(decide_submissions([retry], failed, {}, 5, "p", max_job_attempts=2)) == [
        ("r1-00000", "re-attach", 1)
    ]


def test_without_a_ledger_the_latest_attempt_bedrock_has_is_attached():
    a = shard("s00000")
    jobs = {}
    for n, status in ((1, JobStatus.FAILED), (2, JobStatus.COMPLETED)):
        name = job_name("p", "s00000", a.digest, n)
        jobs[name] = JobSummary(
            job_arn=f"arn:{n}", job_name=name, model_id=CLAUDE, status=status, input_uri=a.input_uri
        )
    (d,) = decide_submissions([a], {}, jobs, 5, "p")
    assert (d.action, d.attempt, d.found.job_arn) == (Action.ATTACH_FOUND, 2, "arn:2")


def test_changed_input_means_a_new_job_even_after_success():
    old = shard("s00000", "a" * 64)
    new = shard("s00000", "b" * 64)
    (decision,) = decide_submissions([new], {"s00000": attempt(old, JobStatus.COMPLETED)}, {}, 1, "p")
    assert (decision.action, decision.attempt) == (Action.CREATE, 2) and "bbbbbbbbbb" in decision.job_name


def test_a_job_bedrock_has_by_our_name_is_attached_or_refused_if_it_reads_other_input():
    a = shard("s00000")
    name = job_name("p", "s00000", a.digest, 1)
    ours = JobSummary(
        job_arn="arn:x", job_name=name, model_id=CLAUDE, status=JobStatus.SCHEDULED, input_uri=a.input_uri
    )
    (found,) = decide_submissions([a], {}, {name: ours}, 0, "p")
    assert found.action is Action.ATTACH_FOUND and found.found == ours
    other = JobSummary(
        job_arn="arn:y", job_name=name, model_id=CLAUDE, status=JobStatus.COMPLETED, input_uri="s3://b/elsewhere.jsonl"
    )
    (taken,) = decide_submissions([a], {}, {name: other}, 5, "p")
    assert taken.action is Action.NAME_TAKEN and "set a distinct job_name_prefix" in taken.reason


# ---- against the local stack -----------------------------------------------------------------


def with_quota(defs, limit: int):
    defs.resources["bedrock"] = BedrockBatchResource(quota_overrides={CLAUDE: {"max_concurrent_jobs": limit}})
    return defs


def test_jobs_of_other_teams_take_slots_and_queued_shards_wait(make_pipelines, instance, stack, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("slots_wait", bucket)], rows=450)
    with_quota(defs, 3)
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions("slots_wait__shards")
    stack.emulator.time_scale = 3600  # every job stays in flight until the test moves it on
    [foreign_job(bucket, f"other-{bucket}-{i}") for i in range(2)]
    execute_stage(defs, instance, spec.name, "submit", shards)
    statuses = {k: v.status for k, v in ledger_of(defs).latest_by_shard("slots_wait").items()}
    assert statuses == {"s00000": JobStatus.SUBMITTED, "s00001": JobStatus.QUEUED, "s00002": JobStatus.QUEUED}


def test_service_quota_exceeded_queues_and_the_pipeline_still_completes(make_pipelines, instance, stack, bucket):
    stack.emulator.concurrency_limits[CLAUDE] = 1  # the service knows a lower limit than we do
    defs, (spec,) = make_pipelines([pipeline_dict("svcquota", bucket)], rows=450)
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (450, 450)
    assert summary.job_statuses == {"Completed": 3}
    assert summary.bedrock_calls.calls["CreateModelInvocationJob"] >= 3


def test_job_created_before_a_crash_is_reattached_by_name(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("crash", bucket)], rows=300)
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions("crash__shards")
    execute_stage(defs, instance, spec.name, "submit", shards, assets=[PipelineKeys("crash").jsonl_shards])
    info = load_shard_index(step_of(spec)).shards[0]
    layout = PipelineLayout.for_uri(spec.output_uri)
    name = job_name(spec.job_prefix, info.key, info.digest, 1)
    input_uri, output_uri = layout.shard_input(info.key).uri, layout.job_output(info.key).uri
    arn = boto3.client("bedrock").create_model_invocation_job(
        jobName=name,
        clientRequestToken=request_token(name, input_uri, output_uri),
        roleArn=ROLE,
        modelId=CLAUDE,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
    )["jobArn"]

    result = execute_stage(defs, instance, spec.name, "submit", shards, assets=[PipelineKeys("crash").batch_jobs])
    assert ledger_of(defs).latest("crash", info.key).job_arn == arn
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == SUBMITTED_CHECK]
    assert check.metadata["bedrock_calls"].value["CreateModelInvocationJob"] == len(shards) - 1


def test_rejected_submission_ends_as_error_rows_not_lost(make_pipelines, instance, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([pipeline_dict("rejected", bucket)], rows=300)
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions("rejected__shards")
    jsonl, jobs = PipelineKeys("rejected").jsonl_shards, PipelineKeys("rejected").batch_jobs
    execute_stage(defs, instance, spec.name, "submit", shards, assets=[jsonl])
    layout = PipelineLayout.for_uri(spec.output_uri)
    gone = layout.shard_input("s00001")
    s3.delete_object(Bucket=gone.bucket, Key=gone.key)  # Bedrock will reject this job at creation

    result = execute_stage(defs, instance, spec.name, "submit", shards, assets=[jobs])
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {SUBMITTED_CHECK: False, PROGRESS_CHECK: True}  # refused: no job to stall
    (request,) = tick(defs, spec, instance).run_requests  # one range run for both finished shards
    assert request.tags["bedrock_assets/job_status"] == "Completed,SubmitFailed"
    execute_stage(defs, instance, spec.name, "merge", shards)
    merged_uri = layout.merged("s00001")
    path = tmp_path / "merged.parquet"
    s3.download_file(merged_uri.bucket, merged_uri.key, str(path))
    merged = pq.read_table(path)
    assert merged.num_rows == 100 and set(merged.column("error_code").to_pylist()) == {"JobSubmitFailed"}
    assert "ValidationException" in merged.column("error_message")[0].as_py()

    # re-materializing the shard (its input is rewritten) is a new, explicit attempt
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)
    assert ledger_of(defs).latest("rejected", "s00001").attempt == 2


def test_throttled_calls_are_retried_by_botocore(make_pipelines, instance, stack, bucket):
    stack.configure(throttle_every=2)
    defs, (spec,) = make_pipelines([pipeline_dict("throttled", bucket)], rows=300)
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)


def test_a_rerun_does_not_pay_again_for_a_failed_job_unless_asked(make_pipelines, instance, stack, bucket):
    stack.configure(fail_jobs_matching="-s00001-")
    defs, (spec,) = make_pipelines([pipeline_dict("refail", bucket, retry=NO_RECOURSE)], rows=300)
    run(defs, spec, instance)
    again = run(defs, spec, instance)
    assert "CreateModelInvocationJob" not in again.bedrock_calls.calls and again.job_statuses == {
        "Completed": 1,
        "Failed": 1,
    }
    stack.configure(fail_jobs_matching=None)
    result = execute_stage(
        defs,
        instance,
        spec.name,
        "submit",
        ["s00001"],
        run_config={"ops": {"refail__batch_jobs": {"config": {"resubmit_failed": True}}}},
    )
    assert result.success and ledger_of(defs).latest("refail", "s00001").attempt == 2


def test_a_lost_ledger_recovers_the_same_outcome_from_bedrock(make_pipelines, instance, stack, bucket):
    stack.configure(fail_jobs_matching="-s00001-")
    defs, (spec,) = make_pipelines([pipeline_dict("lostledger", bucket, retry=NO_RECOURSE)], rows=300)
    run(defs, spec, instance)
    stack.configure(fail_jobs_matching=None)
    execute_stage(
        defs,
        instance,
        spec.name,
        "submit",
        ["s00001"],
        run_config={"ops": {"lostledger__batch_jobs": {"config": {"resubmit_failed": True}}}},
    )
    kept = run(defs, spec, instance)  # attempt 2 of s00001 completed
    assert kept.succeeded == 300

    lost = pipeline_defs([spec], f"ledger-lost-{bucket}")  # the DynamoDB table is gone: a new, empty one
    with dg.instance_for_test() as fresh:
        recovered = run(lost, spec, fresh)
    assert (recovered.rows, recovered.succeeded) == (300, 300)
    assert "CreateModelInvocationJob" not in recovered.bedrock_calls.calls
    assert ledger_of(lost).latest("lostledger", "s00001").attempt == 2


def test_a_live_quota_below_ours_wastes_at_most_one_create_per_tick(make_pipelines, instance, stack, bucket):
    stack.emulator.concurrency_limits[CLAUDE] = 1  # the service allows 1 job; we believe 20
    stack.configure(time_scale=0.25)  # each job holds the only slot for ~1 s
    defs, (spec,) = make_pipelines([pipeline_dict("probe", bucket, shards={"max_records": 100})], rows=600)
    summary = run(defs, spec, instance)
    creates = summary.bedrock_calls.calls["CreateModelInvocationJob"]
    assert (summary.rows, summary.succeeded, summary.shards) == (600, 600, 6)
    assert creates - 6 <= summary.sensor_ticks + 1  # refused creates: one probe per tick at most


def test_two_racing_submitters_create_each_job_once(make_pipelines, instance, stack, bucket):
    import threading

    from bedrock_assets.bedrock.resource import CallCounter
    from bedrock_assets.graph import batch_jobs
    from bedrock_assets.shards import load_shard_index

    stack.configure(time_scale=3600)  # jobs stay in flight: every shard is submitted exactly once or re-attached
    defs, (spec,) = make_pipelines([pipeline_dict("race", bucket, shards={"max_records": 100})], rows=600)
    execute_stage(defs, instance, spec.name, "prepare")
    execute_stage(
        defs,
        instance,
        spec.name,
        "submit",
        instance.get_dynamic_partitions("race__shards"),
        assets=[PipelineKeys("race").jsonl_shards],
    )
    shards = load_shard_index(step_of(spec)).shards
    counters = [CallCounter(), CallCounter()]
    barrier = threading.Barrier(2)

    def submitter(counter):
        barrier.wait()
        batch_jobs.submit(step_of(spec, defs), ledger_of(defs), shards, counter)

    threads = [threading.Thread(target=submitter, args=(c,)) for c in counters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    creates = sum(c.calls.get("CreateModelInvocationJob", 0) for c in counters)
    assert creates == 6  # the ledger claim lets one submitter per attempt call Bedrock
    assert {a.status for a in ledger_of(defs).latest_by_shard("race").values()} == {JobStatus.SUBMITTED}


def test_a_claim_is_held_while_its_submitter_lives_and_taken_over_at_once_when_it_is_gone(
    make_pipelines, instance, bucket
):
    from bedrock_assets.bedrock.resource import CallCounter
    from bedrock_assets.graph import batch_jobs
    from bedrock_assets.processes import OWNER
    from bedrock_assets.shards import load_shard_index

    defs, (spec,) = make_pipelines([pipeline_dict("orphan", bucket)], rows=150)
    execute_stage(defs, instance, spec.name, "prepare")
    execute_stage(defs, instance, spec.name, "submit", ["s00000"], assets=[PipelineKeys("orphan").jsonl_shards])
    (info,) = load_shard_index(step_of(spec)).shards
    ledger = ledger_of(defs)
    layout = PipelineLayout.for_uri(spec.output_uri)
    orphan = ledger.create(
        JobAttempt(
            pipeline="orphan",
            shard="s00000",
            attempt=1,
            job_name=job_name(spec.job_prefix, "s00000", info.digest, 1),
            input_digest=info.digest,
            model_id=CLAUDE,
            records=info.records,
            input_uri=layout.shard_input("s00000").uri,
            output_uri=layout.job_output("s00000").uri,
        )
    )
    held = ledger.update(orphan, status=JobStatus.SUBMITTING, claimed_by=OWNER)  # a live submitter: this process
    fresh = CallCounter()
    (outcome,) = batch_jobs.submit(step_of(spec, defs), ledger, [info], fresh)
    assert outcome.status is JobStatus.SUBMITTING and "CreateModelInvocationJob" not in fresh.calls
    assert outcome.detail == "being submitted by another run"

    other_host = ledger.update(held, claimed_by="elsewhere:41:1")  # another host's: a lease, just taken
    (outcome,) = batch_jobs.submit(step_of(spec, defs), ledger, [info], CallCounter())
    assert outcome.status is JobStatus.SUBMITTING

    ledger.update(other_host, claimed_by=dead_owner())  # the submitter died here, before calling Bedrock
    later = CallCounter()
    (outcome,) = batch_jobs.submit(step_of(spec, defs), ledger, [info], later)
    assert outcome.status is JobStatus.SUBMITTED and later.calls["CreateModelInvocationJob"] == 1


def test_a_claim_is_stale_when_its_process_is_gone_or_its_lease_ran_out():
    from datetime import UTC, datetime, timedelta

    from bedrock_assets.bedrock.submission import CLAIM_LEASE, claim_is_stale
    from bedrock_assets.processes import OWNER

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    base = attempt(shard("s00000"), JobStatus.SUBMITTING)
    fresh, old = now.isoformat(), (now - CLAIM_LEASE - timedelta(seconds=1)).isoformat()
    assert not claim_is_stale(replace(base, claimed_by=OWNER, updated_at=old), now)  # alive, however old
    assert claim_is_stale(replace(base, claimed_by=dead_owner(), updated_at=fresh), now)  # gone, however fresh
    assert not claim_is_stale(replace(base, claimed_by="elsewhere:7:1", updated_at=fresh), now)
    assert claim_is_stale(replace(base, claimed_by="elsewhere:7:1", updated_at=old), now)
    assert claim_is_stale(replace(base, claimed_by=None, updated_at=old), now)  # written before claims had owners
    assert not claim_is_stale(replace(base, status=JobStatus.QUEUED, claimed_by=dead_owner()), now)


def test_a_create_answered_500_after_it_took_effect_is_attached_not_failed(make_pipelines, instance, stack, bucket):
    # every answer of the first shard's create is lost, botocore's retries with the same token included
    stack.configure(lose_create_responses=8, time_scale=3600)
    defs, (spec,) = make_pipelines([pipeline_dict("lost500", bucket)], rows=300)
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions("lost500__shards")
    execute_stage(defs, instance, spec.name, "submit", shards)
    ledger = ledger_of(defs)
    first = ledger.latest("lost500", "s00000")
    assert (first.status, first.attempt) == (JobStatus.SUBMITTED, 1) and first.job_arn
    names = [j["jobName"] for j in boto3.client("bedrock").list_model_invocation_jobs()["invocationJobSummaries"]]
    assert sorted(n for n in names if n.startswith(spec.job_prefix)) == sorted(
        a.job_name for a in ledger.latest_by_shard("lost500").values()
    )  # one job per shard: no second attempt for the one whose answer was lost

    stack.emulator.expedite()
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded, summary.job_statuses) == (300, 300, {"Completed": 2})


def test_a_create_whose_answers_fail_and_that_made_no_job_is_queued_and_submitted_again():
    from botocore.exceptions import ClientError

    from bedrock_assets.bedrock.quotas import BatchQuotas
    from bedrock_assets.bedrock.submission import Decision, JobSettings, _claim_and_create

    class Service:
        def create_model_invocation_job(self, **_):
            raise ClientError({"Error": {"Code": "InternalServerException", "Message": "boom"}}, "Create")

    class Bedrock(BedrockBatchResource):
        def find_job(self, client, name, counter=None):
            return None

    class Ledger:
        def __init__(self):
            self.writes = []

        def update(self, a, expect_status=None, expect_updated_at=None, **changes):
            self.writes.append(changes)
            return replace(a, **changes)

    s = shard("s00000")
    d = Decision(s, Action.CREATE, 1, "job-s00000")
    ledger = Ledger()
    settings = JobSettings("p", "pre", CLAUDE, "InvokeModel", ROLE, 24, {}, BatchQuotas())
    queued = attempt(s, JobStatus.QUEUED, arn=None)
    outcome = _claim_and_create(Service(), Bedrock(), ledger, settings, d, queued, None)
    assert outcome.status is JobStatus.QUEUED and outcome.job_arn is None
    assert "no job named job-s00000 yet" in outcome.detail
    assert [w["status"] for w in ledger.writes] == [JobStatus.SUBMITTING, JobStatus.QUEUED]


def test_a_missing_role_is_a_submit_failure_with_its_reason_and_a_rerun_after_the_fix_finishes(
    make_pipelines, instance, bucket
):
    spec_dict = pipeline_dict("norole", bucket)
    del spec_dict["role_arn"]
    defs, (spec,) = make_pipelines([spec_dict], rows=150)
    defs.resources["bedrock"] = BedrockBatchResource()  # and none on the resource
    summary = run(defs, spec, instance)
    assert summary.failed == 150 and summary.errors == {"JobSubmitFailed": 150}
    (only,) = ledger_of(defs).latest_by_shard("norole").values()
    assert only.status is JobStatus.SUBMIT_FAILED and only.message.startswith("not submitted: no role_arn")
    assert "  s00000 SubmitFailed: not submitted: no role_arn: set it in the pipeline's defs.yaml" in "\n".join(
        summary.lines()
    )  # the summary says why

    from bedrock_assets.components.bedrock_batch_pipeline import build_pipeline_defs

    resources = {**defs.resources, "bedrock": BedrockBatchResource(role_arn=ROLE)}  # the role is set now
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=resources))
    fixed = run(defs, spec, instance)  # the rerun's automation submits the shard again: a new attempt
    assert (fixed.rows, fixed.succeeded) == (150, 150)
    assert ledger_of(defs).latest("norole", "s00000").attempt == 2


def test_a_live_quota_below_ours_is_probed_once_per_job_that_ends_not_once_per_tick(
    make_pipelines, instance, stack, bucket
):
    from bedrock_assets.runner import run_pipelines

    stack.emulator.concurrency_limits[CLAUDE] = 1  # the service allows 1 job; we believe 20
    stack.configure(time_scale=0.5)  # each job holds the only slot for ~2 s
    defs, (spec,) = make_pipelines([pipeline_dict("polled", bucket, shards={"max_records": 100})], rows=400)
    (summary,) = run_pipelines(defs, [spec], instance, poll_seconds=0.5, timeout_seconds=120, log=lambda _: None)
    refused = summary.bedrock_calls.calls["CreateModelInvocationJob"] - 4
    assert summary.succeeded == 400
    assert refused <= 4  # one refused create at most per job of ours that ends (each may free the slot)
    assert summary.sensor_ticks <= summary.seconds / 0.5 + 1  # and ticks at most once per poll interval
