"""The final dataset: each record once, in input order, with its outcome from the last round that holds it."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from bedrock_assets.graph.merged_dataset import final_outcomes, with_final_outcomes
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.runner import execute_stage
from bedrock_assets_tests.helpers import pipeline_dict


def merged(ids, shard, job, outputs, codes) -> pa.Table:
    return pa.table(
        {
            "source": [f"text of {i}" for i in ids],
            "record_id": ids,
            "shard": [shard] * len(ids),
            "job_arn": [job] * len(ids),
            "output_text": outputs,
            "error_code": codes,
        }
    )


def test_the_last_round_holding_a_record_gives_its_outcome_and_attempts():
    first = merged(["a", "b", "c", "d"], "s00000", "job0", ["A", None, None, None], [None, "429", "500", "400"])
    round1 = merged(["b", "c"], "r1-00000", "job1", ["B", None], [None, "429"])
    round2 = merged(["c"], "r2-00000", "on-demand/job2", ["C"], [None])

    final = with_final_outcomes(first, final_outcomes([round1, round2]))

    assert final.column("record_id").to_pylist() == ["a", "b", "c", "d"]  # input order, once each
    assert final.column("output_text").to_pylist() == ["A", "B", "C", None]
    assert final.column("error_code").to_pylist() == [None, None, None, "400"]  # a final error is not retried
    assert final.column("job_arn").to_pylist() == ["job0", "job1", "on-demand/job2", "job0"]
    assert final.column("attempts").to_pylist() == [1, 2, 3, 1]
    assert final.column("shard").to_pylist() == ["s00000"] * 4  # lineage: the first-pass shard stays
    assert final.column("source").to_pylist() == [f"text of {i}" for i in "abcd"]


def test_without_retries_every_record_took_one_attempt():
    first = merged(["a", "b"], "s00000", "job0", ["A", None], [None, "400"])
    assert with_final_outcomes(first, None).column("attempts").to_pylist() == [1, 1]


def test_merged_dataset_waits_for_every_shard_with_a_warning_not_a_failure(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("early", bucket)], rows=300)
    keys = PipelineKeys("early")
    before_plan = execute_stage(defs, instance, spec.name, "publish")  # "Materialize all" on a fresh pipeline
    (check,) = before_plan.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "the shards are not planned yet" in check.description
    execute_stage(defs, instance, spec.name, "prepare")
    execute_stage(defs, instance, spec.name, "submit", instance.get_dynamic_partitions("early__shards"))
    (check,) = execute_stage(defs, instance, spec.name, "publish").get_asset_check_evaluations()
    assert check.metadata["shards_not_merged"].value == 2
    assert instance.get_latest_materialization_event(keys.merged_dataset) is None


def test_parts_that_differ_only_in_nullability_merge_and_a_changed_type_is_refused_by_name():
    import pyarrow as pa
    import pytest

    from bedrock_assets.graph.merged_dataset import _plain, conform

    strict = pa.table(
        {"source": pa.array(["a"]), "n": pa.array([1])},
        pa.schema([pa.field("source", pa.string(), False), pa.field("n", pa.int64())]),
    )
    loose = pa.table({"source": pa.array([None], pa.string()), "n": pa.array([2])})
    first, later = _plain(strict), _plain(loose)
    assert conform(later, first.schema, "s00001").column("source").to_pylist() == [None]
    drifted = _plain(pa.table({"source": ["b"], "n": ["two"]}))
    with pytest.raises(ValueError, match=r"column 'n' is string in shard s00002 but int64 in the shards before it"):
        conform(drifted, first.schema, "s00002")


def test_a_source_regenerated_with_a_nullable_column_merges_with_the_parts_of_the_run_before(
    make_pipelines, instance, s3, bucket, tmp_path
):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bedrock_assets_tests.helpers import read_parquet, run

    defs, (spec,) = make_pipelines([pipeline_dict("regen", bucket)], rows=300)
    source = read_parquet(s3, f"s3://{bucket}/raw/sample.parquet", tmp_path)
    strict = pa.schema([f.with_nullable(False) if f.name == "source" else f for f in source.schema])

    def put(table: pa.Table) -> None:
        path = tmp_path / "upload.parquet"
        pq.write_table(table, path)
        s3.upload_file(str(path), bucket, "raw/sample.parquet")

    put(source.cast(strict))  # `source` is `string not null`
    assert run(defs, spec, instance).succeeded == 300
    row_250 = pa.array([i == 250 for i in range(source.num_rows)])
    edited = pc.if_else(row_250, "an edited text", source.column("source"))
    put(source.set_column(source.schema.get_field_index("source"), "source", edited))  # nullable now
    again = run(defs, spec, instance)  # the edited shard is merged again, next to the other's part
    assert (again.rows, again.succeeded) == (300, 300)


def test_the_complete_check_names_failed_jobs_by_their_final_outcome_and_keeps_the_recovered_apart():
    from bedrock_assets.bedrock.job_status import JobStatus
    from bedrock_assets.graph.merged_dataset import complete_check
    from bedrock_assets.report import MergedDataset
    from bedrock_assets_tests.helpers import job

    latest = {
        "s00000": job("s00000", JobStatus.FAILED, "Internal error"),  # its rows all succeeded in round 1
        "s00001": job("s00001", JobStatus.EXPIRED),  # 3 of its rows are still failed
        "s00002": job("s00002", JobStatus.COMPLETED),
        "r1-00000": job("r1-00000", JobStatus.COMPLETED),
    }
    dataset = MergedDataset(300, 297, {"JobExpired": 3}, 3, "s3://b/d", failed_by_shard={"s00001": 3})
    check = complete_check(dataset, 300, 0.05, latest, list(latest))
    assert check.passed
    failed = check.metadata["failed_jobs"].value.records
    assert [(r.data["shard"], r.data["failed_rows"]) for r in failed] == [("s00001", 3)]
    assert [r.data["shard"] for r in check.metadata["failed_jobs_recovered"].value.records] == ["s00000"]


def test_the_dataset_carries_dagsters_row_count_column_schema_and_a_few_rows(make_pipelines, instance, bucket):
    from bedrock_assets_tests.helpers import run

    defs, (spec,) = make_pipelines([pipeline_dict("described", bucket)], rows=150)
    run(defs, spec, instance)
    meta = instance.get_latest_materialization_event(
        PipelineKeys("described").merged_dataset
    ).asset_materialization.metadata
    assert meta["dagster/row_count"].value == 150
    columns = {c.name: c.type for c in meta["dagster/column_schema"].value.columns}
    assert columns["record_id"] == "string" and columns["attempts"] == "int64" and "output_text" in columns
    table_lines = meta["sample_rows"].value.splitlines()
    assert table_lines[0].startswith("| source | target | rationale | task | record_id |") and len(table_lines) == 2 + 5


def test_sample_rows_cut_long_values_and_show_vectors_by_length():
    from bedrock_assets.report import _markdown

    rows = pa.table({"text": ["a|b\nc" + "x" * 100], "embedding": [[0.5] * 256]})
    assert _markdown(rows, width=10).splitlines()[2] == "| a\\|b cxxx… | [256 values] |"
