"""The pipeline spec: valid attributes load; malformed ones fail naming the file and the field."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bedrock_assets.components.loading import load_pipelines
from bedrock_assets.spec import PipelineSpec, SpecError, schema_model
from bedrock_assets.storage import S3Access
from bedrock_assets_tests.helpers import TITAN, one_spec, pipeline_dict, spec_error, write_defs


def test_unknown_key_is_named(tmp_path):
    assert "attributes.modle: unknown key; did you mean 'model'?" in spec_error(tmp_path, modle={"id": "x"})
    assert "attributes.colour: unknown key\n" in spec_error(tmp_path, colour="x") + "\n"  # nothing near it


def test_unknown_nested_key_is_named(tmp_path):
    message = spec_error(tmp_path, shards={"max_recs": 5})
    assert "attributes.shards.max_recs: unknown key; did you mean 'max_records' or 'min_records'?" in message


def test_model_without_adapter(tmp_path):
    assert "model.id 'cohere.command-r-v1:0' has no InvokeModel adapter" in spec_error(
        tmp_path, model="cohere.command-r-v1:0"
    )


def test_missing_model_is_required_not_defaulted(tmp_path):
    attributes = pipeline_dict("p1", "bkt")
    del attributes["model"]
    path = write_defs(tmp_path / "p1", attributes)
    with pytest.raises(SpecError, match=r"attributes\.model: Field required"):
        load_pipelines(path)


def test_invalid_job_name_prefix(tmp_path):
    assert "job_name_prefix" in spec_error(tmp_path, job_name_prefix="has_underscore")
    assert "longer than" in spec_error(tmp_path, job_name_prefix="a" * 60)


def test_invalid_s3_uris(tmp_path):
    assert "output_uri 's3://bkt/a=b'" in spec_error(tmp_path, output_uri="s3://bkt/a=b")
    assert "output_uri must start with s3://" in spec_error(tmp_path, output_uri="/local/out")
    assert "source.uri" in spec_error(tmp_path, source={"uri": "s3://Bad_Bucket/x.parquet"})


def test_timeout_and_role(tmp_path):
    assert "attributes.timeout_hours" in spec_error(tmp_path, timeout_hours=12)
    assert "is not an IAM role ARN" in spec_error(tmp_path, role_arn="BedrockRole")


def test_template_fields_must_be_columns(tmp_path):
    assert "template field {a.b} must name a column" in spec_error(tmp_path, prompt={"template": "{a.b}"})


def test_embedding_settings(tmp_path):
    assert "prompt.input_column is required" in spec_error(tmp_path, model=TITAN, prompt={})
    assert "inference.dimensions must be one of" in spec_error(tmp_path, model=TITAN, inference={"dimensions": 300})


def test_min_above_max_records(tmp_path):
    assert "exceeds shards.max_records" in spec_error(tmp_path, shards={"max_records": 150, "min_records": 200})


def test_yaml_schema_has_the_spec_fields_and_bounds_but_not_its_checks():
    schema = schema_model(PipelineSpec).model_json_schema()
    assert schema["additionalProperties"] is False and set(schema["required"]) == {
        "name",
        "source",
        "model",
        "output_uri",
    }
    shards = schema["$defs"]["ShardSpecAttributes"]
    assert shards["additionalProperties"] is False
    assert shards["properties"]["max_records"]["anyOf"][0]["exclusiveMinimum"] == 0
    # templates are checked after rendering: the schema accepts a templated URI the spec would refuse
    schema_model(PipelineSpec).model_validate(pipeline_dict("p", "bkt", output_uri="s3://{{ env.B }}/x"))


def test_missing_template_column_names_column_and_source():
    spec = one_spec(pipeline_dict("p1", "bkt", prompt={"template": "{question} {task}"}))
    with pytest.raises(SpecError, match=r"column\(s\) \['question'\] .* not in data.parquet"):
        spec.check_columns(["source", "task"], "data.parquet")


def test_shard_limits_narrow_but_never_loosen_model_quotas():
    spec = one_spec(pipeline_dict("p1", "bkt", shards={"max_records": 90_000, "min_records": 20}))
    q = spec.quotas()
    assert q.max_records_per_shard == 50_000 and q.min_records_per_job == 100
    assert spec.quotas({spec.model.id: {"min_records_per_job": 50}}).min_records_per_job == 50


def test_missing_column_fails_raw_dataset_with_clear_error(make_pipelines, instance, bucket):
    from bedrock_assets.runner import PipelineRunError, execute_stage

    defs, (p,) = make_pipelines([pipeline_dict("nocol", bucket, prompt={"template": "{question}"})], rows=150)
    with pytest.raises(PipelineRunError) as info:
        execute_stage(defs, instance, p.name, "prepare")
    assert "column(s) ['question']" in str(info.value) and "raw/sample.parquet" in str(info.value)


def test_parquet_and_csv_sources_read_alike(tmp_path):
    from bedrock_assets.sources import iter_batches, resolve_files

    table = pa.table({"source": ["a,b", "line\nbreak", "ü"], "task": ["t1", "t2", "t3"]})
    pq.write_table(table, tmp_path / "d.parquet")
    pa.csv.write_csv(table, tmp_path / "d.csv")
    got = {}
    for ext in ("parquet", "csv"):
        files = resolve_files(str(tmp_path / f"d.{ext}"), None, S3Access(None))
        got[ext] = pa.Table.from_batches([b.batch for b in iter_batches(files, S3Access(None))]).to_pylist()
    assert got["parquet"] == got["csv"] == table.to_pylist()


@pytest.mark.parametrize(
    "tags, message",
    [
        ({"aws:team": "x"}, "tag key 'aws:team' starts with 'aws:', which AWS reserves"),
        ({"team#1": "x"}, "tag key 'team#1' must be 1-128 characters of letters, digits, spaces and ._:/=+@-"),
        ({"team": "x" * 300}, "value 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' must be at most 256 characters"),
    ],
)
def test_tags_bedrock_would_refuse_are_refused_here(tmp_path, tags, message):
    assert message in spec_error(tmp_path, tags=tags)


def test_an_output_uri_with_dot_segments_is_refused(tmp_path):
    assert "has a '.' or '..' segment" in spec_error(tmp_path, output_uri="s3://bkt/team/../other")


LABELS = {"type": "object", "properties": {"label": {"type": "string"}}}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"retry": {"truncated_max_tokens": 1024}},
            "retry.truncated_max_tokens applies to pipelines with an output_schema",
        ),
        (
            {"retry": {"truncated_max_tokens": 256}, "output_schema": LABELS},
            r"retry.truncated_max_tokens \(256\) must be larger than inference.max_tokens \(512\)",
        ),
        (
            {
                "retry": {"truncated_max_tokens": 4096},
                "output_schema": LABELS,
                "model": "meta.llama3-3-70b-instruct-v1:0",
            },
            "retry.truncated_max_tokens: it must be at most 2048 for Meta Llama",
        ),
        (
            {"output_schema": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}}},
            "attributes: output_schema.properties.n.maximum: Bedrock structured outputs do not support numerical",
        ),
    ],
)
def test_what_structured_outputs_or_the_model_cannot_take_is_refused_at_load(tmp_path, overrides, message):
    assert re.search(message, spec_error(tmp_path, **overrides))


def test_an_unknown_model_id_is_refused_with_the_nearest_listed_ones_unless_marked_unlisted():
    from bedrock_assets.spec import SpecError

    typo = pipeline_dict("typo", "bkt", model="us.anthropic.claude-3-haiku-20240307-v1:9")
    with pytest.raises(SpecError) as refused:
        one_spec(typo)
    message = str(refused.value)
    assert "attributes.model: id: unknown model 'us.anthropic.claude-3-haiku-20240307-v1:9'; did you mean " in message
    assert "'us.anthropic.claude-3-haiku-20240307-v1:0'" in message and "model.unlisted: true" in message
    newer = pipeline_dict("newer", "bkt", model="anthropic.claude-9-v1:0")
    newer["model"]["unlisted"] = True
    assert one_spec(newer).model.id == "anthropic.claude-9-v1:0"


def test_the_settings_digest_follows_what_a_request_line_is_rendered_from_and_nothing_else():
    base = one_spec(pipeline_dict("rendered", "bkt")).settings_digest()
    assert one_spec(pipeline_dict("rendered", "other-bkt", shards={"max_records": 100})).settings_digest() == base
    for changed in ({"inference": {"max_tokens": 77}}, {"prompt": {"template": "{source}"}}):
        assert one_spec(pipeline_dict("rendered", "bkt", **changed)).settings_digest() != base, changed
