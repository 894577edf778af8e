"""`dg scaffold defs bedrock_assets.components.BedrockBatchPipeline` in a user's own dg project, then a run."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import dagster as dg
import yaml

from bedrock_assets.components.loading import load_pipelines
from bedrock_assets.runner import run_pipelines
from bedrock_assets.sample.seed import seed_sample
from bedrock_assets_tests.conftest import ROLE

PYPROJECT = """\
[project]
name = "userproj"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["bedrock_assets"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "userproj"
"""

DEFINITIONS = """\
from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def new_project(parent: Path) -> Path:
    """What `create-dagster project userproj` lays out, minus its virtualenv (this one's is used)."""
    root = parent / "userproj"
    (root / "userproj" / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "userproj" / "__init__.py").write_text("")
    (root / "userproj" / "defs" / "__init__.py").write_text("")
    (root / "userproj" / "definitions.py").write_text(DEFINITIONS)
    return root


def test_scaffold_writes_a_defs_yaml_to_fill_in_and_the_resources_once(tmp_path):
    from bedrock_assets_tests.test_bedrock_batch_pipeline import dg_command

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
    check = dg_command("check", "defs", cwd=project)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_a_scaffolded_pipeline_filled_in_runs_on_the_local_stack(tmp_path, stack, s3, bucket, monkeypatch):
    from bedrock_assets_tests.test_bedrock_batch_pipeline import dg_command

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
