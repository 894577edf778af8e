"""bench.orchestration: the AWS calls it reports are every call the process made, by service and operation."""

from __future__ import annotations

import boto3
import botocore.client
from botocore.stub import Stubber

from bench.orchestration import AwsCalls


def test_every_call_is_counted_by_service_and_operation(monkeypatch):
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", botocore.client.BaseClient._make_api_call)
    aws = AwsCalls()
    aws.install()
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(s3) as s3_stub, Stubber(ddb) as ddb_stub:
        for _ in range(2):
            s3_stub.add_response("head_object", {"ContentLength": 1})
        ddb_stub.add_response("put_item", {})
        s3.head_object(Bucket="bkt1", Key="a")
        s3.head_object(Bucket="bkt1", Key="b")
        ddb.put_item(TableName="t", Item={"pk": {"S": "k"}})
    assert aws.calls == {"s3": {"HeadObject": 2}, "dynamodb": {"PutItem": 1}}
