"""`dg scaffold defs bedrock_assets.components.BedrockBatchPipeline` in a user's own dg project, then a run."""

from __future__ import annotations

import importlib
import sys

import dagster as dg
import yaml

from bedrock_assets.components.loading import load_pipelines
from bedrock_assets.runner import run_pipelines
from bedrock_assets.sample.seed import seed_sample
from bedrock_assets_tests.helpers import ROLE, new_project


def test_scaffold_writes_a_defs_yaml_to_fill_in_and_the_resources_once(tmp_path, dg_command):
    project = new_project(tmp_path)
    for name in ("first_pipe", "second_pipe"):
        done = dg_command("scaffold", "defs", "bedrock_assets.components.BedrockBatchPipeline", name, cwd=project)
        assert done.returncode == 0, done.stderr[-2000:]
    defs_dir = project / "userproj" / "defs"
    first = yaml.safe_load((defs_dir / "first_pipe" / "defs.yaml").read_text())
    assert first["type"] == "bedrock_assets.components.BedrockBatchPipeline"
    assert first["attributes"]["output_uri"] == "s3://my-bucket/bedrock/first-pipe"
    assert first["attributes"]["prompt"]["template"] == "Answer briefly: {question}"
    assert sorted(p.name for p in defs_dir.glob("*.py")) == ["__init__.py", "bedrock_resources.py"]  # once
    check = dg_command("check", "defs", cwd=project, env={"BEDROCK_ROLE_ARN": ROLE})
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    missing = dg_command("check", "defs", cwd=project, unset=("BEDROCK_ROLE_ARN",))  # named at load, not at submit
    assert missing.returncode == 1
    assert "{{ env.BEDROCK_ROLE_ARN }} names an environment variable that is not set" in missing.stdout + missing.stderr


def test_a_scaffolded_pipeline_filled_in_runs_on_the_local_stack(tmp_path, stack, s3, bucket, monkeypatch, dg_command):
    project = new_project(tmp_path)
    assert (
        dg_command(
            "scaffold", "defs", "bedrock_assets.components.BedrockBatchPipeline", "my_pipeline", cwd=project
        ).returncode
        == 0
    )
    seed_sample(s3, f"s3://{bucket}/data/questions.parquet", rows=250)
    defs_yaml = project / "userproj" / "defs" / "my_pipeline" / "defs.yaml"
    filled = (
        defs_yaml.read_text()
        .replace("s3://my-bucket/path/to/data.parquet", f"s3://{bucket}/data/questions.parquet")
        .replace("s3://my-bucket/bedrock/my-pipeline", f"s3://{bucket}/bedrock/my-pipeline")
        .replace("Answer briefly: {question}", "Answer briefly: {source}")
    )
    defs_yaml.write_text(filled)
    monkeypatch.setenv("BEDROCK_ROLE_ARN", ROLE)
    monkeypatch.syspath_prepend(str(project))
    for name in [m for m in sys.modules if m == "userproj" or m.startswith("userproj.")]:
        del sys.modules[name]
    defs = importlib.import_module("userproj.definitions").defs
    (spec,) = load_pipelines(defs_yaml)
    with dg.instance_for_test() as instance:
        (summary,) = run_pipelines(defs, [spec], instance, poll_seconds=0.05, timeout_seconds=120, log=lambda _: None)
    assert (summary.rows, summary.succeeded, summary.shards) == (250, 250, 1)


def test_the_scaffolded_defs_yaml_names_every_field_of_the_spec():
    from bedrock_assets.components.bedrock_batch_pipeline import BedrockBatchPipeline
    from bedrock_assets.components.scaffold import DEFS_YAML
    from bedrock_assets.spec import RetrySpec

    text = DEFS_YAML.format(type_name="t", name="p", slug="p")
    missing = [f for f in BedrockBatchPipeline.model_fields if f"{f}:" not in text]
    assert missing == []
    assert [f for f in RetrySpec.model_fields if f"{f}:" not in text] == []
    assert "ONE failed row left after the retry rounds" in text  # what the default max_error_rate means
