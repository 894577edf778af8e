"""End to end through Dagster on the local stack: the daemon's conditions and sensor, driven headless."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from botocore.exceptions import ClientError

from bedrock_assets.bedrock.prices import price_for
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.graph.merged_dataset import read_merged_dataset
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.runner import execute_stage, run_pipelines
from bedrock_assets_tests.helpers import CLAUDE, NO_RECOURSE, TITAN, ledger_of, pipeline_dict, read_parquet, run, tick


def read_source(s3, bucket, tmp_path):
    path = tmp_path / "source.parquet"
    s3.download_file(bucket, "raw/sample.parquet", str(path))
    return pq.read_table(path)


def runs_of(instance, job_name: str) -> int:
    return len(instance.get_run_records(filters=dg.RunsFilter(job_name=job_name)))


def test_claude_pipeline_every_row_once_with_output(make_pipelines, instance, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([pipeline_dict("cot", bucket)], rows=450)
    summary = run(defs, spec, instance)

    assert summary.shards == 3  # 450 rows, max 200 per shard -> 200 + a 50-row tail rebalanced to 125 + 125
    assert (summary.rows, summary.succeeded, summary.failed) == (450, 450, 0)
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    source = read_source(s3, bucket, tmp_path)
    assert merged.num_rows == source.num_rows
    assert pc.count_distinct(merged.column("record_id")).as_py() == 450
    # input order and content kept; every row has text; lineage columns present
    assert merged.column("source").to_pylist() == source.column("source").to_pylist()
    assert all(t.startswith("[emulated]") for t in merged.column("output_text").to_pylist())
    assert set(merged.column("shard").to_pylist()) == {"s00000", "s00001", "s00002"}
    assert all(a.startswith("arn:aws:bedrock:") for a in merged.column("job_arn").to_pylist())
    assert merged.column("source_row").to_pylist() == list(range(450))
    assert pc.sum(merged.column("output_tokens")).as_py() == summary.output_tokens > 0
    assert summary.bedrock_calls.calls["CreateModelInvocationJob"] == 3
    frame = read_merged_dataset(spec, columns=["record_id", "output_text", "error_code"])
    assert list(frame.columns) == ["record_id", "output_text", "error_code"] and len(frame) == 450


def test_the_summary_counts_every_control_plane_call_the_service_received(make_pipelines, instance, stack, bucket):
    """Calls travel as metadata (the submit check's, the sensor's status observations): none is lost."""
    stack.configure(time_scale=1)  # a second per job state: polls that change nothing come between
    defs, (spec,) = make_pipelines([pipeline_dict("counted", bucket, retry=NO_RECOURSE)], rows=450)
    before = stack.emulator.control_plane_calls()
    summary = run(defs, spec, instance)
    after = stack.emulator.control_plane_calls()
    received = {op: n - before.get(op, 0) for op, n in after.items() if n > before.get(op, 0)}
    assert summary.bedrock_calls.calls == received and received["ListModelInvocationJobs"] >= 2


def test_runs_carry_readable_names_tags_and_each_shards_own_numbers(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("named", bucket)], rows=450)
    run(defs, spec, instance)
    runs = instance.get_runs()
    assert {r.job_name for r in runs} == {"named__prepare", "named__submit", "named__merge", "named__publish"}
    merge = next(r for r in runs if r.job_name == "named__merge")
    assert (
        merge.tags["bedrock_assets/pipeline"],
        merge.tags["bedrock_assets/stage"],
        merge.tags["bedrock_assets/shards"],
    ) == ("named", "merge", "s00000..s00002")
    keys = PipelineKeys("named")
    rows = {}
    for shard in ("s00000", "s00001", "s00002"):
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.merged_results, asset_partitions=[shard]), limit=1
        ).records
        rows[shard] = record.asset_materialization.metadata["rows"].value
    assert rows == {"s00000": 200, "s00001": 125, "s00002": 125}  # not the range's total on every shard


def test_titan_pipeline_gives_fixed_size_float32_vectors(make_pipelines, instance, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([pipeline_dict("emb", bucket, model=TITAN)], rows=300)
    summary = run(defs, spec, instance)

    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    column = merged.column("embedding")
    assert pa.types.is_fixed_size_list(column.type) and column.type.list_size == 256
    assert column.type.value_type == pa.float32()
    vectors = np.asarray(column.combine_chunks().values).reshape(-1, 256)
    assert vectors.shape == (300, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    # Titan reports its tokens as inputTextTokenCount: they are counted and priced (not billed at $0)
    price = price_for(TITAN)
    assert summary.input_tokens == pc.sum(merged.column("input_tokens")).as_py() > 0
    assert summary.cost == pytest.approx(summary.input_tokens * price.batch.input / 1000) and summary.cost > 0
    # embeddings: no output tokens; the worst case bounds the input tokens by the JSONL bytes
    assert 0 < summary.planned_expected < summary.planned_worst and summary.cost <= summary.planned_worst


def test_record_errors_and_dropped_records_are_kept_as_error_rows(
    make_pipelines, instance, stack, s3, bucket, tmp_path
):
    stack.configure(record_error_rate=0.1, drop_rate=0.05)
    defs, (spec,) = make_pipelines([pipeline_dict("faulty", bucket, retry=NO_RECOURSE)], rows=450)
    summary = run(defs, spec, instance)

    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert merged.num_rows == 450 and pc.count_distinct(merged.column("record_id")).as_py() == 450
    codes = merged.column("error_code").to_pylist()
    not_returned = codes.count("RecordNotReturned")
    model_errors = sum(1 for c in codes if c not in (None, "RecordNotReturned"))
    assert 5 <= not_returned <= 50 and 15 <= model_errors <= 90
    assert summary.failed == not_returned + model_errors
    assert summary.job_statuses == {"PartiallyCompleted": 3}
    ok = merged.filter(pc.is_null(merged.column("error_code")))
    assert ok.num_rows == summary.succeeded and pc.all(pc.is_valid(ok.column("output_text"))).as_py()
    failed = merged.filter(pc.is_valid(merged.column("error_code")))
    assert pc.all(pc.is_valid(failed.column("error_message"))).as_py()


def test_failed_job_marks_its_rows_and_other_shards_still_merge(make_pipelines, instance, stack, s3, bucket, tmp_path):
    stack.configure(fail_jobs_matching="-s00001-")
    defs, (spec,) = make_pipelines([pipeline_dict("partial", bucket, retry=NO_RECOURSE)], rows=450)
    summary = run(defs, spec, instance)

    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    by_shard = {
        shard: merged.filter(pc.equal(merged.column("shard"), shard)).column("error_code").to_pylist()
        for shard in ("s00000", "s00001", "s00002")
    }
    assert merged.num_rows == 450
    assert set(by_shard["s00001"]) == {"JobFailed"} and len(by_shard["s00001"]) >= 100
    assert set(by_shard["s00000"]) == set(by_shard["s00002"]) == {None}
    assert summary.job_statuses == {"Completed": 2, "Failed": 1}


@pytest.mark.parametrize(
    "knob, status, code",
    [("expire_jobs_matching", "Expired", "JobExpired"), ("fail_jobs_matching", "Failed", "JobFailed")],
)
def test_jobs_that_never_ran_still_give_every_row(make_pipelines, instance, stack, bucket, knob, status, code):
    name = f"doomed_{status.lower()}"
    stack.configure(**{knob: "doomed"})
    defs, (spec,) = make_pipelines([pipeline_dict(name, bucket, retry=NO_RECOURSE)], rows=150)
    summary = run(defs, spec, instance)
    assert summary.rows == 150 and summary.errors == {code: 150}
    assert summary.job_statuses == {status: 1}


def test_rerun_reattaches_and_merges_nothing_again(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("again", bucket)], rows=300)
    first = run(defs, spec, instance)
    merges_before = runs_of(instance, "again__merge")
    second = run(defs, spec, instance)

    assert first.bedrock_calls.calls.get("CreateModelInvocationJob") == 2
    assert "CreateModelInvocationJob" not in second.bedrock_calls.calls
    assert (second.rows, second.succeeded) == (300, 300)
    assert runs_of(instance, "again__merge") == merges_before  # already merged for these very jobs
    assert {a.attempt for a in ledger_of(defs).latest_by_shard("again").values()} == {1}


def test_a_sensor_tick_elsewhere_does_not_keep_the_run_from_merging(make_pipelines, instance, stack, bucket):
    """The old defect: another process ticked the sensor first, and the headless run never merged."""
    defs, (spec,) = make_pipelines([pipeline_dict("raced", bucket)], rows=300)
    execute_stage(defs, instance, spec.name, "prepare")
    execute_stage(defs, instance, spec.name, "submit", instance.get_dynamic_partitions("raced__shards"))
    assert tick(defs, spec, instance).run_requests  # requested elsewhere, never executed there
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)


def test_a_merged_dataset_nobody_will_build_is_built(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("crashed", bucket)], rows=300)
    run(defs, spec, instance)
    instance.wipe_assets([PipelineKeys("crashed").merged_dataset])  # as if the process died before it
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)


def test_two_pipelines_get_their_own_groups_and_partitions(make_pipelines, instance, bucket):
    defs, specs = make_pipelines(
        [pipeline_dict("one", bucket), pipeline_dict("two", bucket, model=TITAN, shards={"max_records": 300})]
    )
    for spec in specs:
        execute_stage(defs, instance, spec.name, "prepare")
    assert instance.get_dynamic_partitions("one__shards") == ["s00000", "s00001", "s00002"]
    assert instance.get_dynamic_partitions("two__shards") == ["s00000", "s00001"]
    groups = {
        spec.name: {
            defs.resolve_asset_graph().get(k).group_name
            for k in defs.resolve_asset_graph().get_all_asset_keys()
            if k.path[0] == spec.name
        }
        for spec in specs
    }
    assert groups == {"one": {"one", "one__shards"}, "two": {"two", "two__shards"}}


@pytest.mark.parametrize("shared_instance", [False, True], ids=["own-instances", "one-instance"])
def test_two_concurrent_headless_runs_both_finish_without_duplicate_jobs(stack, s3, bucket, tmp_path, shared_instance):
    from bedrock_assets.sample.seed import seed_sample

    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=600)
    stack.configure(time_scale=0.3)
    name = "concurrent_one" if shared_instance else "concurrent_own"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "defs.yaml").write_text(
        yaml.safe_dump(
            {"type": "bedrock_assets.components.BedrockBatchPipeline", "attributes": pipeline_dict(name, bucket)}
        )
    )
    env = {**os.environ, "BEDROCK_ASSETS_LEDGER_TABLE": f"ledger-{bucket}"}
    env.pop("DAGSTER_HOME", None)
    if shared_instance:
        home = tmp_path / "dagster_home"
        home.mkdir()
        env["DAGSTER_HOME"] = str(home)
        # an instance that exists already, as dg dev's does (two processes creating one race on its tables)
        subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"], env=env, check=True)
    command = [
        sys.executable,
        "-m",
        "bedrock_assets.cli",
        "run",
        str(folder),
        "--poll-seconds",
        "0.2",
        "--timeout",
        "240",
    ]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        assert f"pipeline {name}: 600 rows -> 600 succeeded, 0 failed" in out
    prefix = name.replace("_", "-") + "-"
    jobs = stack.client("bedrock").list_model_invocation_jobs(nameContains=prefix)["invocationJobSummaries"]
    assert len(jobs) == 3 and len({j["jobName"] for j in jobs}) == 3  # each shard's job created once


TICK_CALLS = {"n": 0}


class FlakyBedrock(BedrockBatchResource):
    """Bedrock whose 2nd and 3rd List calls fail as an outage does (a 503 past botocore's retries)."""

    def recent_jobs(self, client, counter=None):
        TICK_CALLS["n"] += 1
        if TICK_CALLS["n"] in (2, 3):
            raise ClientError(
                {
                    "Error": {"Code": "ServiceUnavailableException", "Message": "outage"},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "ListModelInvocationJobs",
            )
        return super().recent_jobs(client, counter)


def test_a_control_plane_outage_while_waiting_is_waited_out(make_pipelines, instance, stack, bucket):
    stack.configure(time_scale=0.5)
    defs, (spec,) = make_pipelines([pipeline_dict("outage", bucket)], rows=300)
    TICK_CALLS["n"] = 0
    defs.resources["bedrock"] = FlakyBedrock()  # call 1: the submit run; 2 and 3: the next two sensor ticks
    lines: list[str] = []
    (summary,) = run_pipelines(defs, [spec], instance, poll_seconds=0.05, timeout_seconds=120, log=lines.append)
    assert (summary.rows, summary.succeeded) == (300, 300)
    waits = [line for line in lines if line.startswith("AWS is not answering (ClientError); retrying in")]
    assert waits == [
        "AWS is not answering (ClientError); retrying in 2 s",
        "AWS is not answering (ClientError); retrying in 4 s",
    ]


def test_an_outage_inside_a_step_is_retried_by_its_retry_policy(make_pipelines, instance, stack, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("stepretry", bucket)], rows=300)
    defs.resources["bedrock"] = BedrockBatchResource(max_attempts=1)  # no botocore retries: the step sees it
    keys = PipelineKeys(spec.name)
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions(keys.partitions)
    execute_stage(defs, instance, spec.name, "submit", shards, assets=[keys.jsonl_shards])
    stack.configure(outage_seconds=3)  # a 3 s outage from the step's first Bedrock call, however late it comes
    result = execute_stage(defs, instance, spec.name, "submit", shards, assets=[keys.batch_jobs])
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert result.success and retried and retried[0].step_key == "stepretry__batch_jobs"


def test_a_timeout_says_which_jobs_still_run_and_that_a_rerun_reattaches(make_pipelines, instance, stack, bucket):
    from bedrock_assets.runner import PipelineRunError

    stack.configure(time_scale=3600)
    defs, (spec,) = make_pipelines([pipeline_dict("slowjobs", bucket)], rows=300)
    with pytest.raises(PipelineRunError) as info:
        run_pipelines(defs, [spec], instance, poll_seconds=0.05, timeout_seconds=2, log=lambda _: None)
    message = str(info.value)
    assert "still running in Bedrock: slowjobs s00000 (Submitted, arn:aws:bedrock:" in message
    assert "run the same command again to re-attach" in message


def test_the_stop_message_names_running_jobs_apart_from_shards_that_have_none():
    from bedrock_assets.bedrock.job_status import JobStatus
    from bedrock_assets.ledger import JobAttempt
    from bedrock_assets.progress import PipelineStatus
    from bedrock_assets.runner import PipelineState, in_bedrock

    def attempt(shard: str, status: JobStatus, arn: str | None) -> JobAttempt:
        return JobAttempt(
            "p", shard, 1, f"p-{shard}", "d", CLAUDE, 100, "s3://b/i", "s3://b/o", status=status, job_arn=arn
        )

    attempts = {
        "s00000": attempt("s00000", JobStatus.IN_PROGRESS, "arn:job0"),
        "s00001": attempt("s00001", JobStatus.SUBMITTING, None),
        "s00002": attempt("s00002", JobStatus.QUEUED, None),
        "s00003": attempt("s00003", JobStatus.COMPLETED, "arn:job3"),
    }
    state = PipelineState(PipelineStatus.of(list(attempts), attempts, {}), attempts, False)
    assert in_bedrock([state]) == (
        "still running in Bedrock: p s00000 (InProgress, arn:job0); no job yet for p s00001 (Submitting), "
        "p s00002 (Queued)"
    )
    done = {"s00003": attempts["s00003"]}
    assert in_bedrock([PipelineState(PipelineStatus.of(["s00003"], done, {}), done, True)]) == "no job is still running"


def test_summaries_count_in_prose_not_dict_reprs():
    from bedrock_assets.runner import counted, plural

    assert counted({"Failed": 1, "Completed": 3, "Expired": 1}) == "3 Completed, 1 Expired, 1 Failed"
    assert (plural(1, "sensor tick"), plural(2, "sensor tick"), plural(1200, "run")) == (
        "1 sensor tick",
        "2 sensor ticks",
        "1,200 runs",
    )


def test_the_timeout_holds_while_aws_does_not_answer(make_pipelines, instance, stack, bucket):
    from bedrock_assets.runner import PipelineRunError

    defs, (spec,) = make_pipelines([pipeline_dict("outage", bucket)], rows=150)
    defs.resources["bedrock"] = BedrockBatchResource(max_attempts=1)
    execute_stage(defs, instance, spec.name, "prepare")
    outage_ends = time.time() + 120
    stack.configure(unavailable_until=outage_ends)  # a two-minute outage of the batch API
    with pytest.raises(PipelineRunError, match=r"timed out after 3 s"):
        run_pipelines(defs, [spec], instance, poll_seconds=0.05, timeout_seconds=3, log=lambda _: None)
    returned = time.time()
    stack.configure(unavailable_until=0)
    assert returned < outage_ends  # it gave up during the outage, not after it (the backoff waits are cut)
