"""Submission: quota-aware (counting jobs that are not ours), idempotent, and never losing a shard."""

from __future__ import annotations

import json

import boto3
import pytest
from dagster import build_sensor_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bedrock_assets.bedrock import BedrockBatchResource, job_name, request_token
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import QUEUED
import pyarrow.parquet as pq

from bedrock_assets.runner import execute_selection
from bedrock_assets_tests.conftest import CLAUDE, ROLE, pipeline_dict, run


def submit_all(defs, pipeline, instance):
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.raw_dataset])
    shards = instance.get_dynamic_partitions(pipeline.partitions.name)
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.jsonl_shards, pipeline.keys.batch_jobs],
                      shards)
    return shards


def tick(defs, pipeline, instance):
    return pipeline.sensor(build_sensor_context(instance=instance, resources=defs.resources, definitions=defs))


def with_quota(defs, limit: int):
    defs.resources["bedrock"] = BedrockBatchResource(quota_overrides={CLAUDE: {"max_concurrent_jobs": limit}})
    return defs


def foreign_job(bucket: str, name: str) -> str:
    """A job of the same model that some other team submitted (not in our ledger)."""
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=f"other/{name}.jsonl", Body=b"\n".join(
        json.dumps({"recordId": f"R{i:011d}", "modelInput": {"anthropic_version": "bedrock-2023-05-31",
                    "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}}).encode()
        for i in range(100)))
    return boto3.client("bedrock").create_model_invocation_job(
        jobName=name, roleArn=ROLE, modelId=CLAUDE,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/other/{name}.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/other-out/"}},
    )["jobArn"]


def test_jobs_of_other_teams_take_slots_and_queued_shards_go_when_slots_free(make_pipelines, instance, stack,
                                                                             bucket):
    defs, (pipeline,) = make_pipelines([pipeline_dict("slots", bucket)], rows=450)
    with_quota(defs, 3)
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.raw_dataset])
    shards = instance.get_dynamic_partitions(pipeline.partitions.name)
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.jsonl_shards], shards)
    stack.emulator.time_scale = 3600  # every job stays in flight until the test moves it on
    others = [foreign_job(bucket, f"other-team-{i}") for i in range(2)]
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.batch_jobs], shards)
    ledger = defs.resources["ledger"].get_ledger()
    statuses = {k: v["status"] for k, v in ledger.latest_by_shard("slots").items()}
    assert statuses == {"s00000": "Submitted", "s00001": QUEUED, "s00002": QUEUED}

    result = tick(defs, pipeline, instance)
    assert result.run_requests == []  # still no free slot

    bedrock = boto3.client("bedrock")
    for arn in others:  # the other team stops its jobs: their slots free once they reach Stopped
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert tick(defs, pipeline, instance).run_requests == []  # Stopping still holds a slot
    for arn in others:
        stack.emulator.expedite(arn)
    submits = [r for r in tick(defs, pipeline, instance).run_requests if r.run_key.startswith("submit:")]
    assert [r.partition_key for r in submits] == ["s00001", "s00002"]
    assert submits[0].asset_selection == [pipeline.keys.batch_jobs]
    for r in submits:
        execute_selection(pipeline, defs.resources, instance, r.asset_selection, [r.partition_key])
    statuses = {k: v["status"] for k, v in ledger.latest_by_shard("slots").items()}
    assert statuses == {"s00000": "Submitted", "s00001": "Submitted", "s00002": "Submitted"}


def test_service_quota_exceeded_queues_and_the_pipeline_still_completes(make_pipelines, instance, stack, bucket):
    stack.emulator.concurrency_limits[CLAUDE] = 1  # the service knows a lower limit than we do
    defs, (pipeline,) = make_pipelines([pipeline_dict("svcquota", bucket)], rows=450)
    summary = run(defs, pipeline, instance)
    assert (summary.rows, summary.succeeded) == (450, 450)
    assert summary.job_statuses == {"Completed": 3}
    assert summary.bedrock_calls["CreateModelInvocationJob"] >= 3


def test_job_created_before_a_crash_is_reattached_by_name(make_pipelines, instance, bucket):
    defs, (pipeline,) = make_pipelines([pipeline_dict("crash", bucket)], rows=300)
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.raw_dataset])
    shards = instance.get_dynamic_partitions(pipeline.partitions.name)
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.jsonl_shards], shards)
    from bedrock_assets.prepare import load_shard_index

    info = load_shard_index(pipeline.spec, boto3.client("s3")).shards[0]
    layout = PipelineLayout.for_uri(pipeline.spec.output_uri)
    name = job_name(pipeline.spec.job_prefix, info.key, info.digest, 1)
    input_uri, output_uri = layout.shard_input(info.key).uri, layout.job_output(info.key).uri
    arn = boto3.client("bedrock").create_model_invocation_job(
        jobName=name, clientRequestToken=request_token(name, input_uri, output_uri), roleArn=ROLE, modelId=CLAUDE,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
    )["jobArn"]

    result = execute_selection(pipeline, defs.resources, instance, [pipeline.keys.batch_jobs], shards)
    ledger = defs.resources["ledger"].get_ledger()
    assert ledger.latest("crash", info.key)["job_arn"] == arn
    calls = [m.materialization.metadata["bedrock_calls"].value for m in result.get_asset_materialization_events()]
    assert calls[0]["CreateModelInvocationJob"] == len(shards) - 1


def test_sensor_requests_each_finished_job_once_with_a_stable_run_key(make_pipelines, instance, stack, bucket):
    stack.emulator.time_scale = 3600  # jobs stay in flight until expedited
    defs, (pipeline,) = make_pipelines([pipeline_dict("ticks", bucket)], rows=300)
    submit_all(defs, pipeline, instance)
    first = tick(defs, pipeline, instance)
    assert first.run_requests == []
    assert [e.asset_key for e in first.asset_events] == [pipeline.keys.batch_jobs] * 2  # first look at each job
    assert {e.metadata["status"].value for e in first.asset_events} == {"Submitted"}

    stack.emulator.expedite()
    (finished,) = tick(defs, pipeline, instance).run_requests  # both shards in one partition-range run
    assert finished.partition_key is None and finished.run_key.startswith("outputs:s00000..s00001:")
    assert (finished.tags[ASSET_PARTITION_RANGE_START_TAG], finished.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        "s00000", "s00001")
    assert finished.asset_selection == [pipeline.keys.batch_job_outputs, pipeline.keys.merged_results]
    assert tick(defs, pipeline, instance).run_requests == []  # not requested twice
    cursor = json.loads(tick(defs, pipeline, instance).cursor)
    assert cursor["open"] == 0 and cursor["finished"] == 0


def test_rejected_submission_ends_as_error_rows_not_lost(make_pipelines, instance, s3, bucket, tmp_path):
    defs, (pipeline,) = make_pipelines([pipeline_dict("rejected", bucket)], rows=300)
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.raw_dataset])
    shards = instance.get_dynamic_partitions(pipeline.partitions.name)
    execute_selection(pipeline, defs.resources, instance, [pipeline.keys.jsonl_shards], shards)
    layout = PipelineLayout.for_uri(pipeline.spec.output_uri)
    gone = layout.shard_input("s00001")
    s3.delete_object(Bucket=gone.bucket, Key=gone.key)  # Bedrock will reject this job at creation

    result = execute_selection(pipeline, defs.resources, instance, [pipeline.keys.batch_jobs], shards)
    assert [c.passed for c in result.get_asset_check_evaluations()] == [False]
    (request,) = tick(defs, pipeline, instance).run_requests  # one range run for both finished shards
    assert request.tags["bedrock-assets/job-status"] == "Completed,SubmitFailed"
    execute_selection(pipeline, defs.resources, instance, request.asset_selection, shards)
    merged_uri = layout.merged("s00001")
    path = tmp_path / "merged.parquet"
    s3.download_file(merged_uri.bucket, merged_uri.key, str(path))
    merged = pq.read_table(path)
    assert merged.num_rows == 100 and set(merged.column("error_code").to_pylist()) == {"JobSubmitFailed"}
    assert "ValidationException" in merged.column("error_message")[0].as_py()

    # re-materializing the shard (its input is rewritten) is a new, explicit attempt
    summary = run(defs, pipeline, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)
    assert defs.resources["ledger"].get_ledger().latest("rejected", "s00001")["attempt"] == 2


def test_throttled_calls_are_retried_by_botocore(make_pipelines, instance, stack, bucket):
    stack.configure(throttle_every=2)
    defs, (pipeline,) = make_pipelines([pipeline_dict("throttled", bucket)], rows=300)
    summary = run(defs, pipeline, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)


@pytest.mark.parametrize("knob, status, code", [("expire_jobs_matching", "Expired", "JobExpired"),
                                                ("fail_jobs_matching", "Failed", "JobFailed")])
def test_jobs_that_never_ran_still_give_every_row(make_pipelines, instance, stack, bucket, knob, status, code):
    name = f"doomed_{status.lower()}"
    stack.configure(**{knob: "doomed"})
    defs, (pipeline,) = make_pipelines([pipeline_dict(name, bucket)], rows=150)
    summary = run(defs, pipeline, instance)
    assert summary.rows == 150 and summary.errors == {code: 150}
    assert summary.job_statuses == {status: 1}


def test_finished_shards_are_grouped_into_contiguous_runs():
    from bedrock_assets.sensors import contiguous_groups

    items = [{"shard": s} for s in ("s00007", "s00001", "s00002", "s00003", "s00005", "s00006")]
    groups = [[i["shard"] for i in g] for g in contiguous_groups(items, limit=2)]
    assert groups == [["s00001", "s00002"], ["s00003"], ["s00005", "s00006"], ["s00007"]]
