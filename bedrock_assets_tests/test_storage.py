"""S3 as the pipeline uses it: the bucket owner and KMS key on every call, no credential anywhere, local copies
of what this process wrote, ranged reads of a source's schema, and clients made once."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource

from bedrock_assets import aws
from bedrock_assets.aws import shared
from bedrock_assets.local_copies import COPIES, LocalCopies
from bedrock_assets.sources import read_columns, resolve_files
from bedrock_assets.storage import S3Access, local_copy, upload_file
from bedrock_assets.uris import S3Location
from bedrock_assets_tests.helpers import NO_RECOURSE, ledger_of, pipeline_dict, run

OWNER = "123456789012"
KEY = "alias/bedrock-assets-test"
CALLS: list[tuple[str, dict]] = []
READS: list[tuple[str, int]] = []  # (key, HTTP status) of every GetObject


class RecordingS3(S3Resource):
    """dagster-aws's S3Resource whose clients record every call they make."""

    def get_client(self):
        client = super().get_client()
        client.meta.events.register(
            "before-parameter-build.s3.*", lambda model, params, **_: CALLS.append((model.name, dict(params)))
        )
        client.meta.events.register(
            "after-call.s3.GetObject",
            lambda http_response, context, **_: READS.append(
                (context["s3_redirect"]["params"]["Key"], http_response.status_code)
            ),
        )
        return client


def test_access_arguments():
    assert S3Access(None).read_args() == {} and S3Access(None).write_args() == {}
    access = S3Access(None, OWNER, KEY)
    assert access.read_args() == {"ExpectedBucketOwner": OWNER}
    assert access.write_args() == {"ExpectedBucketOwner": OWNER, "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY}


def test_every_s3_call_carries_the_bucket_owner_and_every_write_the_kms_key(make_pipelines, instance, stack, bucket):
    defs, (spec,) = make_pipelines(
        [pipeline_dict("owned", bucket, expected_bucket_owner=OWNER, kms_key_id=KEY)], rows=300
    )
    defs.resources["s3"] = RecordingS3()
    CALLS.clear()
    READS.clear()
    summary = run(defs, spec, instance)
    assert summary.succeeded == 300 and len(CALLS) > 20
    missing = [(op, sorted(params)) for op, params in CALLS if params.get("ExpectedBucketOwner") != OWNER]
    assert missing == []
    writes = [params for op, params in CALLS if op in ("PutObject", "CreateMultipartUpload")]
    assert writes and all(p.get("SSEKMSKeyId") == KEY and p.get("ServerSideEncryption") == "aws:kms" for p in writes)
    # what the run wrote itself is never downloaded again: each read of a canonical part or an outputs
    # table is one conditional GET answered 304 Not Modified
    own = [(key, status) for key, status in READS if "/canonical/s" in key or "/outputs/" in key]
    assert len(own) >= 4 and {status for _, status in own} == {304}
    # Bedrock is told the same for the job's own input and output
    attempt = ledger_of(defs).latest("owned", "s00000")
    job = stack.client("bedrock").get_model_invocation_job(jobIdentifier=attempt.job_arn)
    assert job["inputDataConfig"]["s3InputDataConfig"]["s3BucketOwner"] == OWNER
    assert job["outputDataConfig"]["s3OutputDataConfig"]["s3EncryptionKeyId"] == KEY


def test_no_credential_reaches_logs_metadata_or_errors(make_pipelines, instance, stack, bucket, monkeypatch, capsys):
    secret, key_id = "sEcReT-sentinel-0123456789", "AKIASENTINEL00000000"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    stack.configure(fail_jobs_matching="creds-s00001-", record_error_rate=0.05)
    defs, (spec,) = make_pipelines([pipeline_dict("creds", bucket, retry=NO_RECOURSE)], rows=300)
    run(defs, spec, instance)
    text = capsys.readouterr()
    seen = [text.out, text.err]
    for record in instance.get_run_records():
        seen += [str(e) for e in instance.all_logs(record.dagster_run.run_id)]
    for key in (dg.AssetKey(["creds", n]) for n in ("batch_jobs", "merged_results", "merged_dataset")):
        seen += [str(r.event_log_entry) for r in instance.fetch_materializations(key, limit=20).records]
    assert len(seen) > 50 and not [s for s in seen if secret in s or key_id in s]


class S3Calls:
    """GetObject calls a client makes: HTTP status and bytes received."""

    def __init__(self, client) -> None:
        self.gets: list[tuple[int, int]] = []
        client.meta.events.register("after-call.s3.GetObject", self._record)

    def _record(self, http_response, **_) -> None:
        self.gets.append((http_response.status_code, int(http_response.headers.get("content-length") or 0)))


def test_a_copy_this_process_wrote_is_read_back_without_a_download_until_someone_changes_it(stack, bucket, tmp_path):
    client = boto3.client("s3")
    calls = S3Calls(client)
    loc = S3Location(bucket, "canonical/s00000.parquet")
    written = tmp_path / "part.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), written)
    upload_file(client, written, loc, keep=True)
    assert not written.exists()  # handed over: nobody can rewrite the kept bytes through this path
    with local_copy(client, loc) as path:
        assert pq.read_table(path).column("x").to_pylist() == list(range(1000))
    assert calls.gets == [(304, 0)]  # one conditional GET, nothing downloaded

    pq.write_table(pa.table({"x": [7]}), tmp_path / "other.parquet")
    boto3.client("s3").upload_file(str(tmp_path / "other.parquet"), bucket, loc.key)  # another writer
    with local_copy(client, loc, keep=True) as path:
        assert pq.read_table(path).column("x").to_pylist() == [7]
    assert calls.gets[1][0] == 200 and calls.gets[1][1] > 0
    with local_copy(client, loc) as path:  # what it just read is kept too
        assert pq.read_table(path).column("x").to_pylist() == [7]
    assert calls.gets[2] == (304, 0)


def test_without_local_copies_or_with_their_files_gone_every_read_downloads(stack, bucket, tmp_path, monkeypatch):
    client = boto3.client("s3")
    calls = S3Calls(client)
    loc = S3Location(bucket, "outputs/s00000.parquet")
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "a.parquet")
    upload_file(client, tmp_path / "a.parquet", loc, keep=True)
    shutil.rmtree(COPIES._directory())  # a /tmp cleaner removed the copies
    with local_copy(client, loc) as path:
        assert pq.read_table(path).column("x").to_pylist() == [1, 2]
    assert [status for status, _ in calls.gets] == [304, 200]  # the 304 found no file: downloaded after all

    monkeypatch.setattr(COPIES, "limit_bytes", 0)  # BEDROCK_ASSETS_LOCAL_COPIES_MB=0
    pq.write_table(pa.table({"x": [3]}), tmp_path / "b.parquet")
    upload_file(client, tmp_path / "b.parquet", loc, keep=True)
    for _ in range(2):
        with local_copy(client, loc, keep=True) as path:
            assert pq.read_table(path).column("x").to_pylist() == [3]
    assert [status for status, _ in calls.gets[2:]] == [200, 200]


def test_local_copies_keep_the_most_recently_used_within_their_limit(tmp_path):
    copies = LocalCopies(limit_bytes=4000)

    def file(name: str, size: int = 900) -> Path:
        path = tmp_path / name
        path.write_bytes(name.encode()[:1] * size)
        return path

    a, b, c = (S3Location("bucket", k) for k in "abc")
    copies.adopt(a, file("a"), '"a"')
    copies.adopt(b, file("b"), '"b"')
    assert copies.link(a, '"a"', tmp_path / "a.out")  # a is now the most recently used
    copies.adopt(c, file("c"), '"c"')
    big = file("big", 1500)  # over a quarter of the limit: not kept, and left where it is
    copies.adopt(S3Location("bucket", "big"), big, '"big"')
    assert copies.etag_of(S3Location("bucket", "big")) is None and big.exists()
    copies.adopt(S3Location("bucket", "d"), file("d"), '"d"')  # 3600 bytes held: still within 4000
    copies.adopt(S3Location("bucket", "e"), file("e"), '"e"')  # over: b, the least recently used, goes
    assert copies.etag_of(b) is None and copies.etag_of(a) == '"a"' and copies.etag_of(c) == '"c"'
    assert not copies.link(a, '"changed"', tmp_path / "stale.out")  # another ETag: not this copy
    assert (tmp_path / "a.out").read_bytes() == b"a" * 900


def test_the_source_schema_is_read_with_ranged_gets_not_a_download(stack, bucket, tmp_path):
    client = boto3.client("s3")
    calls = S3Calls(client)
    path = tmp_path / "big.parquet"
    distinct = [f"{i:010d}" * 30 for i in range(50_000)]  # 15 MB that neither dictionaries nor codecs shrink
    pq.write_table(pa.table({"task": distinct, "source": distinct}), path, compression="none", use_dictionary=False)
    boto3.client("s3").upload_file(str(path), bucket, "raw/big.parquet")
    (file,) = resolve_files(f"s3://{bucket}/raw/big.parquet", None, client)
    assert read_columns(file, client) == ["task", "source"]
    assert len(calls.gets) <= 2 and all(status == 206 for status, _ in calls.gets)
    assert sum(size for _, size in calls.gets) < file.size / 10


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
