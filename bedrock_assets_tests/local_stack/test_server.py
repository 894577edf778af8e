"""The local stack's endpoint: moto's S3 and DynamoDB and the emulator on one port, its control API, and its state across restarts."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bedrock_assets.local_stack import LocalStack
from bedrock_assets.local_stack.server import PERSIST_SECONDS
from bedrock_assets_tests.local_stack.helpers import (
    CLAUDE,
    claude_records,
    create_job,
    make_client,
    put_jsonl,
    uid,
    wait_terminal,
)


def test_s3_and_dynamodb_share_the_endpoint(stack: LocalStack, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello"
    ddb = make_client(stack, "dynamodb")
    table = uid("tbl")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "k1"}, "n": {"N": "3"}})
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "k1"}})["Item"]["n"] == {"N": "3"}


def test_a_copy_of_a_source_that_changed_since_its_etag_was_read_is_refused_as_s3_refuses_it(
    s3: Any, bucket: str
) -> None:
    key = "src/a b-ü-😀.jsonl"  # percent-encoded in the copy-source header, non-ASCII once decoded
    first = s3.put_object(Bucket=bucket, Key=key, Body=b"one\n", Metadata={"sha256": "one"})["ETag"]
    source = {"Bucket": bucket, "Key": key}
    s3.copy_object(Bucket=bucket, Key="dst/a.jsonl", CopySource=source, CopySourceIfMatch=first)
    assert s3.get_object(Bucket=bucket, Key="dst/a.jsonl")["Metadata"] == {"sha256": "one"}  # metadata comes along
    s3.put_object(Bucket=bucket, Key=key, Body=b"two\n")
    with pytest.raises(ClientError) as refused:
        s3.copy_object(Bucket=bucket, Key="dst/a.jsonl", CopySource=source, CopySourceIfMatch=first)
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=bucket, Key="dst/a.jsonl")["Body"].read() == b"one\n"  # the target is untouched
    with pytest.raises(ClientError, match="NoSuchKey"):  # a missing source stays moto's answer
        s3.copy_object(
            Bucket=bucket, Key="dst/b", CopySource={"Bucket": bucket, "Key": "nope"}, CopySourceIfMatch=first
        )


def test_env_points_default_clients_at_stack(stack: LocalStack, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = stack.env()
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint_url and env["AWS_REGION"] == "us-east-1"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    names = [b["Name"] for b in boto3.session.Session().client("s3").list_buckets()["Buckets"]]
    assert bucket in names


def test_control_endpoint(stack: LocalStack) -> None:
    with urllib.request.urlopen(f"{stack.endpoint_url}/_emulator/health") as resp:
        assert json.load(resp)["status"] == "ok"
    req = urllib.request.Request(
        f"{stack.endpoint_url}/_emulator/config",
        method="POST",
        data=json.dumps({"drop_rate": 0.5, "time_scale": 1.5, "concurrency_limits": {CLAUDE: 3}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        cfg = json.load(resp)
    assert cfg["drop_rate"] == 0.5 and cfg["time_scale"] == 1.5 and cfg["concurrency_limits"][CLAUDE] == 3
    assert stack.emulator.faults.drop_rate == 0.5
    stack.configure(concurrency_limits={CLAUDE: None})


def test_restart_with_state_dir_keeps_everything(stack: LocalStack, tmp_path: Path) -> None:
    state = tmp_path / "state"
    bucket, table = f"persist-{uuid.uuid4().hex[:8]}", uid("persist")
    with LocalStack(port=0, time_scale=0.2, state_dir=state) as first:
        s3, ddb, bedrock = make_client(first, "s3"), make_client(first, "dynamodb"), make_client(first, "bedrock")
        s3.create_bucket(Bucket=bucket)
        put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
        s3.put_object(
            Bucket=bucket, Key="bin/blob", Body=bytes(range(256)), ContentType="application/x-test", Metadata={"k": "v"}
        )
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(
            TableName=table,
            Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "blob": {"B": b"\x00\x01"}, "tags": {"SS": ["x", "y"]}},
        )
        arn = create_job(bedrock, bucket)
        assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"
    assert (state / "bedrock_jobs.json").exists()
    # moto's backends are process-global, so wipe the data through the other stack to prove the restore.
    s3m, ddbm = make_client(stack, "s3"), make_client(stack, "dynamodb")
    for obj in s3m.list_objects_v2(Bucket=bucket)["Contents"]:
        s3m.delete_object(Bucket=bucket, Key=obj["Key"])
    s3m.delete_bucket(Bucket=bucket)
    ddbm.delete_table(TableName=table)
    with LocalStack(port=0, time_scale=0.2, state_dir=state) as second:
        s3, ddb, bedrock = make_client(second, "s3"), make_client(second, "dynamodb"), make_client(second, "bedrock")
        blob = s3.get_object(Bucket=bucket, Key="bin/blob")
        assert blob["Body"].read() == bytes(range(256)) and blob["Metadata"] == {"k": "v"}
        assert blob["ContentType"] == "application/x-test"
        item = ddb.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]
        assert item["blob"] == {"B": b"\x00\x01"} and sorted(item["tags"]["SS"]) == ["x", "y"]
        job = wait_terminal(bedrock, arn)
        assert job["status"] == "Completed" and job["successRecordCount"] == 100
    with LocalStack(port=0, state_dir=state) as third:
        assert make_client(third, "bedrock").get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"


@pytest.mark.subprocess
def test_a_stack_killed_with_sigkill_keeps_what_was_written_seconds_before(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "state"
    command = [
        sys.executable,
        "-m",
        "bedrock_assets.cli",
        "local-stack",
        "--port",
        str(port),
        "--state-dir",
        str(state),
    ]

    def started() -> tuple[subprocess.Popen, Any]:
        """The stack in its own process, once it says it listens (after restoring its state)."""
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert child.stdout is not None
        for line in child.stdout:
            if "listening on" in line:
                break
        else:
            raise AssertionError("the local stack did not start")
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        return child, s3

    child, s3 = started()
    s3.create_bucket(Bucket="kept")
    s3.put_object(Bucket="kept", Key="a.txt", Body=b"written before the kill")
    time.sleep(PERSIST_SECONDS * 2.5)  # the persister has snapshotted it by now
    s3.put_object(Bucket="kept", Key="b.txt", Body=b"second")  # changed files are copied, the others linked
    time.sleep(PERSIST_SECONDS * 2.5)
    child.kill()  # SIGKILL: no clean stop, no final snapshot
    child.wait()
    again, s3 = started()
    try:
        assert s3.get_object(Bucket="kept", Key="a.txt")["Body"].read() == b"written before the kill"
        assert s3.get_object(Bucket="kept", Key="b.txt")["Body"].read() == b"second"
    finally:
        again.terminate()
        again.wait(timeout=60)
