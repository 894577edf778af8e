"""boto3 clients made once per process, per configuration and AWS environment."""

from __future__ import annotations

from dagster_aws.s3 import S3Resource

from bedrock_assets import aws
from bedrock_assets.aws import shared


def test_clients_are_made_once_per_configuration_and_aws_environment(monkeypatch):
    made = []
    resource = S3Resource(region_name="us-east-1")
    first = shared("s3", resource, lambda: made.append(1) or object())
    assert shared("s3", S3Resource(region_name="us-east-1"), lambda: made.append(2) or object()) is first
    assert shared("s3", S3Resource(region_name="eu-west-1"), lambda: made.append(3) or object()) is not first
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    assert shared("s3", resource, lambda: made.append(4) or object()) is not first
    monkeypatch.setattr(aws, "SHARED_FOR_SECONDS", 0.0)  # past its time a client is made again
    assert shared("s3", resource, lambda: made.append(5) or object()) is not first
    assert made == [1, 3, 4, 5]
