"""End to end through Dagster on the local stack: materialize, sensor ticks, merged output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import materialize

from bedrock_assets.uris import parse_s3_uri
from bedrock_assets_tests.conftest import TITAN, pipeline_dict, run


def read_merged(s3, uri: str, tmp_path):
    loc = parse_s3_uri(uri)
    path = tmp_path / "merged.parquet"
    s3.download_file(loc.bucket, loc.key, str(path))
    return pq.read_table(path)


def read_source(s3, bucket, tmp_path):
    path = tmp_path / "source.parquet"
    s3.download_file(bucket, "raw/sample.parquet", str(path))
    return pq.read_table(path)


def test_claude_pipeline_every_row_once_with_output(make_pipelines, instance, s3, bucket, tmp_path):
    defs, (pipeline,) = make_pipelines([pipeline_dict("cot", bucket)], rows=450)
    summary = run(defs, pipeline, instance)

    assert summary.shards == 3  # 450 rows, max 200 per shard -> 200 + a 50-row tail rebalanced to 125 + 125
    assert (summary.rows, summary.succeeded, summary.failed) == (450, 450, 0)
    merged = read_merged(s3, summary.merged_uri, tmp_path)
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
    assert summary.bedrock_calls["CreateModelInvocationJob"] == 3


def test_titan_pipeline_gives_fixed_size_float32_vectors(make_pipelines, instance, s3, bucket, tmp_path):
    defs, (pipeline,) = make_pipelines([pipeline_dict("emb", bucket, model=TITAN)], rows=300)
    summary = run(defs, pipeline, instance)

    merged = read_merged(s3, summary.merged_uri, tmp_path)
    column = merged.column("embedding")
    assert pa.types.is_fixed_size_list(column.type) and column.type.list_size == 256
    assert column.type.value_type == pa.float32()
    vectors = np.asarray(column.combine_chunks().values).reshape(-1, 256)
    assert vectors.shape == (300, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)


def test_record_errors_and_dropped_records_are_kept_as_error_rows(make_pipelines, instance, stack, s3, bucket,
                                                                  tmp_path):
    stack.configure(record_error_rate=0.1, drop_rate=0.05)
    defs, (pipeline,) = make_pipelines([pipeline_dict("faulty", bucket)], rows=450)
    summary = run(defs, pipeline, instance)

    merged = read_merged(s3, summary.merged_uri, tmp_path)
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


def test_failed_job_marks_its_rows_and_other_shards_still_merge(make_pipelines, instance, stack, s3, bucket,
                                                                tmp_path):
    stack.configure(fail_jobs_matching="-s00001-")
    defs, (pipeline,) = make_pipelines([pipeline_dict("partial", bucket)], rows=450)
    summary = run(defs, pipeline, instance)

    merged = read_merged(s3, summary.merged_uri, tmp_path)
    by_shard = {
        shard: merged.filter(pc.equal(merged.column("shard"), shard)).column("error_code").to_pylist()
        for shard in ("s00000", "s00001", "s00002")
    }
    assert merged.num_rows == 450
    assert set(by_shard["s00001"]) == {"JobFailed"} and len(by_shard["s00001"]) >= 100
    assert set(by_shard["s00000"]) == set(by_shard["s00002"]) == {None}
    assert summary.job_statuses == {"Completed": 2, "Failed": 1}


def test_rerun_reattaches_instead_of_paying_twice(make_pipelines, instance, s3, bucket):
    defs, (pipeline,) = make_pipelines([pipeline_dict("again", bucket)], rows=300)
    first = run(defs, pipeline, instance)
    second = run(defs, pipeline, instance)

    assert first.bedrock_calls.get("CreateModelInvocationJob") == 2
    assert "CreateModelInvocationJob" not in second.bedrock_calls
    assert (second.rows, second.succeeded) == (300, 300)
    ledger = defs.resources["ledger"].get_ledger()
    assert {i["attempt"] for i in ledger.latest_by_shard("again").values()} == {1}


def test_two_pipelines_in_one_spec_get_their_own_groups_and_partitions(make_pipelines, instance, bucket):
    defs, pipelines = make_pipelines([pipeline_dict("one", bucket), pipeline_dict("two", bucket, model=TITAN,
                                                                                    shards={"max_records": 300})])
    materialize([a for p in pipelines for a in p.assets], selection=[p.keys.raw_dataset for p in pipelines],
                resources=defs.resources, instance=instance)
    assert instance.get_dynamic_partitions("one__shards") == ["s00000", "s00001", "s00002"]
    assert instance.get_dynamic_partitions("two__shards") == ["s00000", "s00001"]
    groups = {p.spec.name: {a.group_names_by_key[k] for a in p.assets for k in a.keys} for p in pipelines}
    assert groups == {"one": {"one"}, "two": {"two"}}


def test_definitions_validate_with_the_dagster_cli():
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "bedrock_assets.definitions"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful" in result.stderr + result.stdout


def test_automation_takes_new_shards_to_submission_and_waits_for_all_merges(make_pipelines, instance, bucket):
    from dagster import build_sensor_context, evaluate_automation_conditions

    from bedrock_assets.runner import execute_selection

    defs, (p,) = make_pipelines([pipeline_dict("auto", bucket)], rows=300)
    result = evaluate_automation_conditions(defs=defs, instance=instance)  # the sensor ticks before anything
    assert result.total_requested == 0
    execute_selection(p, defs.resources, instance, [p.keys.raw_dataset])  # e.g. "Materialize" in the UI
    shards = set(instance.get_dynamic_partitions(p.partitions.name))

    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(p.keys.jsonl_shards) == shards
    assert result.get_requested_partitions(p.keys.batch_jobs) == shards  # same run, after its upstream
    assert not result.get_requested_partitions(p.keys.merged_dataset)

    execute_selection(p, defs.resources, instance, [p.keys.jsonl_shards, p.keys.batch_jobs], sorted(shards))
    p.sensor(build_sensor_context(instance=instance, resources=defs.resources, definitions=defs))  # jobs done
    execute_selection(p, defs.resources, instance, [p.keys.batch_job_outputs, p.keys.merged_results], ["s00000"])
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert not result.get_requested_partitions(p.keys.merged_dataset)  # s00001 not merged yet
    execute_selection(p, defs.resources, instance, [p.keys.batch_job_outputs, p.keys.merged_results], ["s00001"])
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 1 and result.get_requested_partitions(p.keys.merged_dataset) == {None}
