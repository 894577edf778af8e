"""The resources a project's pipelines use: boto3's standard configuration, one S3 client per process."""

from __future__ import annotations

from bedrock_assets.resources import DEFAULT_LEDGER_TABLE, LEDGER_TABLE_ENV, SharedS3Resource, bedrock_resources


def test_the_ledger_table_comes_from_the_environment_and_overrides_win(monkeypatch):
    monkeypatch.delenv(LEDGER_TABLE_ENV, raising=False)
    assert bedrock_resources()["bedrock_ledger"].table_name == DEFAULT_LEDGER_TABLE
    monkeypatch.setenv(LEDGER_TABLE_ENV, "team-jobs")
    resources = bedrock_resources(s3="theirs")
    assert resources["bedrock_ledger"].table_name == "team-jobs" and resources["s3"] == "theirs"
    assert sorted(resources) == ["bedrock", "bedrock_ledger", "s3"]


def test_the_shared_s3_resource_makes_one_client_per_configuration(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    a, b = SharedS3Resource(region_name="us-east-1"), SharedS3Resource(region_name="us-east-1")
    assert a.get_client() is b.get_client()
    assert SharedS3Resource(region_name="eu-west-1").get_client() is not a.get_client()
