"""Pipelines from defs.yaml files: the folder names the pipeline, templates render, mistakes name the file."""

from __future__ import annotations

import pytest

from bedrock_assets.components.loading import load_pipelines
from bedrock_assets.spec import SpecError
from bedrock_assets_tests.helpers import pipeline_dict, write_defs


def test_name_defaults_to_the_folder_and_must_be_a_valid_name(tmp_path):
    attributes = pipeline_dict("ignored", "bkt")
    del attributes["name"]
    (pipeline,) = load_pipelines(write_defs(tmp_path / "reviews_summary", attributes))
    assert pipeline.name == "reviews_summary"
    with pytest.raises(SpecError, match=r"attributes\.name: .*'my-pipeline' must be 1-40 characters"):
        load_pipelines(write_defs(tmp_path / "my-pipeline", attributes))


def test_two_defs_with_one_name_are_refused(tmp_path):
    write_defs(tmp_path / "a", pipeline_dict("same", "bkt"))
    write_defs(tmp_path / "b", pipeline_dict("same", "bkt"))
    with pytest.raises(SpecError, match=r"pipeline name\(s\) \['same'\] are used by more than one defs.yaml"):
        load_pipelines(tmp_path)


def test_a_folder_of_pipelines_skips_other_components(tmp_path):
    write_defs(tmp_path / "one", pipeline_dict("one", "bkt"))
    write_defs(tmp_path / "other", {"x": 1}, type_name="dagster_aws.components.S3ResourceComponent")
    assert [p.name for p in load_pipelines(tmp_path)] == ["one"]
    with pytest.raises(SpecError, match="not bedrock_assets.components.BedrockBatchPipeline"):
        load_pipelines(tmp_path / "other")


def test_yaml_and_missing_file_errors(tmp_path):
    bad = tmp_path / "bad" / "defs.yaml"
    bad.parent.mkdir()
    bad.write_text("type: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_pipelines(bad)
    with pytest.raises(SpecError, match="no such file or folder"):
        load_pipelines(tmp_path / "missing")


def test_env_templates_render_in_text_fields_and_prompts_stay_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("BEDROCK_BUCKET", "team-bucket")
    monkeypatch.setenv("BEDROCK_ROLE", "arn:aws:iam::123456789012:role/Team")
    attributes = pipeline_dict(
        "env",
        "bkt",
        output_uri="s3://{{ env.BEDROCK_BUCKET }}/out/env",
        role_arn="{{ env.BEDROCK_ROLE }}",
        prompt={"template": "Q: {question}", "system": "Reply in 123 words"},
        tags={"cost_center": "0042"},
    )
    (pipeline,) = load_pipelines(write_defs(tmp_path / "env", attributes))
    assert pipeline.output_uri == "s3://team-bucket/out/env"
    assert pipeline.role_arn == "arn:aws:iam::123456789012:role/Team"
    assert pipeline.prompt.template == "Q: {question}" and pipeline.tags == {"cost_center": "0042"}


def test_local_source_resolves_relative_to_the_defs_folder(tmp_path):
    (pipeline,) = load_pipelines(write_defs(tmp_path / "p1", pipeline_dict("p1", "bkt", source={"uri": "data/in.csv"})))
    assert pipeline.source.uri == str(tmp_path / "p1" / "data" / "in.csv")


def test_a_binary_file_is_not_taken_for_a_spec(tmp_path):
    path = tmp_path / "defs.yaml"
    path.write_bytes(b"\x00\x01\xff\xfe")
    with pytest.raises(SpecError, match="not a text file"):
        load_pipelines(path)
