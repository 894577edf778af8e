"""The component and this repository's code location: the asset graph it builds, and what `dg` says of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from bedrock_assets.components import BedrockBatchPipeline
from bedrock_assets_tests.helpers import new_project

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def describe(defs: dg.Definitions) -> dict:
    """What a reviewer should notice changing: keys, deps, groups, partitions, conditions, checks, jobs, sensors."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": getattr(partitions, "name", None) if partitions else None,
            "backfill_policy": str(node.backfill_policy.policy_type.value) if node.backfill_policy else None,
            "automation_condition": node.automation_condition.get_label() if node.automation_condition else None,
            "checks": sorted(f"{c.name}{' (blocking)' if graph.get(c).blocking else ''}" for c in node.check_keys),
            "kinds": sorted(node.kinds),
        }
    jobs = {
        j.name: sorted(k.to_user_string() for k in j.asset_layer.executable_asset_keys)
        for j in defs.resolve_all_job_defs()
        if not j.name.startswith("__")
    }
    sensors = {
        s.name: {
            "status": s.default_status.value,
            "jobs": sorted(t.job_name for t in s.targets)
            if not isinstance(s, dg.AutomationConditionSensorDefinition)
            else "automation",
        }
        for s in defs.sensors
    }
    return {"assets": assets, "jobs": jobs, "sensors": sensors, "resources": sorted(defs.resources)}


def test_the_asset_graph_matches_its_snapshot():
    """Update deliberately with UPDATE_SNAPSHOTS=1 after reviewing the diff."""
    from bedrock_assets.definitions import defs

    current = describe(defs)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_the_code_location_is_the_sample_pipelines_from_defs():
    from bedrock_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        f"{p}{suffix}"
        for p in ("cot_answers", "cot_labels", "cot_review", "source_embeddings")
        for suffix in ("", "__shards")
    }
    # the chain: cot_review's raw_dataset follows cot_answers' merged_dataset across the two groups
    assert (
        dg.AssetKey(["cot_answers", "merged_dataset"])
        in graph.get(dg.AssetKey(["cot_review", "raw_dataset"])).parent_keys
    )
    assert sorted(defs.resources) == ["bedrock", "bedrock_ledger", "s3"]


def test_component_in_python_equals_component_from_yaml(tmp_path):
    attributes = {
        "source": {"uri": "s3://bkt/in.parquet"},
        "model": {"id": "amazon.titan-embed-text-v2:0"},
        "prompt": {"input_column": "text"},
        "output_uri": "s3://bkt/out",
    }
    from_yaml = BedrockBatchPipeline.from_attributes(attributes, tmp_path / "embed_docs")
    in_python = BedrockBatchPipeline(
        name="embed_docs",
        source={"uri": "s3://bkt/in.parquet"},
        model={"id": "amazon.titan-embed-text-v2:0"},
        prompt={"input_column": "text"},
        output_uri="s3://bkt/out",
    )
    assert from_yaml == in_python and from_yaml.adapter().kind == "embedding"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ env.NO_SUCH_ROLE_VAR }}",
            "attributes.role_arn: {{ env.NO_SUCH_ROLE_VAR }} names an environment variable that is not set: set "
            "NO_SUCH_ROLE_VAR (export NO_SUCH_ROLE_VAR=...) or write the value in the defs.yaml",
        ),
        (
            "{{ env.AWS_SECRET_ACCESS_KEY }}",
            "attributes.role_arn: {{ env.AWS_SECRET_ACCESS_KEY }} looks like a credential; no field of a pipeline "
            "needs one, and a rendered value would be written into prompts, tags and S3 objects: use another variable",
        ),
    ],
)
def test_an_env_template_is_refused_at_load_when_unset_or_a_credential(tmp_path, monkeypatch, template, message):
    from bedrock_assets.spec import SpecError

    monkeypatch.delenv("NO_SUCH_ROLE_VAR", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-to-be-rendered")
    attributes = {
        "source": {"uri": "s3://bkt/in.parquet"},
        "model": {"id": "amazon.titan-embed-text-v2:0"},
        "prompt": {"input_column": "text"},
        "output_uri": "s3://bkt/out",
        "role_arn": template,
    }
    with pytest.raises(SpecError) as refused:
        BedrockBatchPipeline.from_attributes(attributes, tmp_path / "embed_docs")
    assert str(refused.value) == f"{tmp_path / 'embed_docs'}: {message}"


def test_dg_check_and_list_defs_see_the_sample_pipelines(dg_command):
    check = dg_command("check", "defs")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "All definitions loaded successfully" in check.stdout
    listed = dg_command("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    keys = {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    assert {"cot_answers/merged_dataset", "cot_review/raw_dataset", "source_embeddings/merged_dataset"} <= keys


def test_dg_list_components_shows_the_component_from_the_entry_point(dg_command):
    listed = dg_command("list", "components", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "bedrock_assets.components.BedrockBatchPipeline" in {c["key"] for c in json.loads(listed.stdout)["items"]}


@pytest.mark.parametrize(
    "typo, message",
    [
        ("    max_tokens: 512", "'max_tokns' was unexpected"),
    ],
)
def test_dg_check_defs_points_at_the_line_of_a_bad_field(tmp_path, typo, message, dg_command):
    project = new_project(tmp_path)
    assert (
        dg_command("scaffold", "defs", "bedrock_assets.components.BedrockBatchPipeline", "pipe", cwd=project).returncode
        == 0
    )
    defs_yaml = project / "userproj" / "defs" / "pipe" / "defs.yaml"
    defs_yaml.write_text(defs_yaml.read_text().replace(typo, typo.replace("max_tokens", "max_tokns")))
    check = dg_command("check", "defs", cwd=project)
    assert check.returncode != 0 and message in check.stdout + check.stderr
    assert f"{defs_yaml}:" in check.stdout + check.stderr
