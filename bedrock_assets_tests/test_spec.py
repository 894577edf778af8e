"""Spec files: valid ones load; malformed ones fail with the file, pipeline and field named."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bedrock_assets.definitions import SAMPLE_SPEC
from bedrock_assets.spec import SpecError, check_columns, load_specs
from bedrock_assets_tests.conftest import TITAN, one_spec, pipeline_dict, write_spec


def spec_error(tmp_path, **overrides) -> str:
    path = write_spec(tmp_path, [pipeline_dict("p1", "bkt", **overrides)])
    with pytest.raises(SpecError) as info:
        load_specs(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_bundled_sample_spec_loads_two_pipelines():
    specs = load_specs(SAMPLE_SPEC)
    assert [s.name for s in specs] == ["cot_answers", "source_embeddings"]
    assert specs[0].adapter().kind == "text" and specs[1].adapter().embedding_dimensions == 1024


def test_unknown_key_is_named(tmp_path):
    assert "pipelines[0] (p1).modle: unknown key" in spec_error(tmp_path, modle={"id": "x"})


def test_unknown_nested_key_is_named(tmp_path):
    assert "pipelines[0] (p1).shards.max_recs: unknown key" in spec_error(tmp_path, shards={"max_recs": 5})


def test_model_without_adapter(tmp_path):
    assert "model.id 'cohere.command-r-v1:0' has no InvokeModel adapter" in spec_error(
        tmp_path, model="cohere.command-r-v1:0")


def test_invalid_job_name_prefix(tmp_path):
    assert "job_name_prefix" in spec_error(tmp_path, job_name_prefix="has_underscore")
    assert "longer than" in spec_error(tmp_path, job_name_prefix="a" * 60)


def test_invalid_s3_uris(tmp_path):
    assert "output_uri 's3://bkt/a=b'" in spec_error(tmp_path, output_uri="s3://bkt/a=b")
    assert "output_uri must start with s3://" in spec_error(tmp_path, output_uri="/local/out")
    assert "source.uri" in spec_error(tmp_path, source={"uri": "s3://Bad_Bucket/x.parquet"})


def test_timeout_and_role(tmp_path):
    assert "timeout_hours" in spec_error(tmp_path, timeout_hours=12)
    assert "is not an IAM role ARN" in spec_error(tmp_path, role_arn="BedrockRole")


def test_template_fields_must_be_columns(tmp_path):
    assert "template field {a.b} must name a column" in spec_error(tmp_path, prompt={"template": "{a.b}"})


def test_embedding_settings(tmp_path):
    assert "prompt.input_column is required" in spec_error(tmp_path, model=TITAN, prompt={})
    assert "inference.dimensions must be one of" in spec_error(tmp_path, model=TITAN, inference={"dimensions": 300})


def test_min_above_max_records(tmp_path):
    assert "exceeds shards.max_records" in spec_error(tmp_path, shards={"max_records": 150, "min_records": 200})


def test_duplicate_pipeline_names(tmp_path):
    path = write_spec(tmp_path, [pipeline_dict("same", "bkt"), pipeline_dict("same", "bkt")])
    with pytest.raises(SpecError, match="pipeline name 'same' is used twice"):
        load_specs(path)


def test_yaml_and_missing_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_specs(bad)
    with pytest.raises(SpecError, match="spec file not found"):
        load_specs(tmp_path / "missing.yaml")


def test_local_source_resolves_relative_to_the_spec_file(tmp_path):
    path = write_spec(tmp_path, [pipeline_dict("p1", "bkt", source={"uri": "data/in.csv"})])
    assert load_specs(path)[0].source.uri == str(tmp_path / "data" / "in.csv")


def test_missing_template_column_names_column_and_source(tmp_path):
    spec = one_spec(pipeline_dict("p1", "bkt", prompt={"template": "{question} {task}"}))
    with pytest.raises(SpecError, match=r"column\(s\) \['question'\] .* not in data.parquet"):
        check_columns(spec, ["source", "task"], "data.parquet")


def test_shard_limits_narrow_but_never_loosen_model_quotas():
    spec = one_spec(pipeline_dict("p1", "bkt", shards={"max_records": 90_000, "min_records": 20}))
    q = spec.quotas()
    assert q.max_records_per_shard == 50_000 and q.min_records_per_job == 100
    assert spec.quotas({spec.model.id: {"min_records_per_job": 50}}).min_records_per_job == 50


def test_missing_column_fails_raw_dataset_with_clear_error(make_pipelines, instance, bucket):
    from dagster import materialize

    defs, (p,) = make_pipelines([pipeline_dict("nocol", bucket, prompt={"template": "{question}"})], rows=150)
    result = materialize(p.assets, selection=[p.keys.raw_dataset], resources=defs.resources, instance=instance,
                         raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    while error.cause is not None:
        error = error.cause
    assert "column(s) ['question']" in error.message and "raw/sample.parquet" in error.message


def test_parquet_and_csv_sources_read_alike(tmp_path):
    from bedrock_assets.sources import iter_batches, resolve_files

    table = pa.table({"source": ["a,b", "line\nbreak", "ü"], "task": ["t1", "t2", "t3"]})
    pq.write_table(table, tmp_path / "d.parquet")
    pa.csv.write_csv(table, tmp_path / "d.csv")
    got = {}
    for ext in ("parquet", "csv"):
        files = resolve_files(str(tmp_path / f"d.{ext}"), None, None)
        got[ext] = pa.Table.from_batches([b.batch for b in iter_batches(files, None)]).to_pylist()
    assert got["parquet"] == got["csv"] == table.to_pylist()
