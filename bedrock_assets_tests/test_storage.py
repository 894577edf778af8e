"""S3 as the pipeline uses it: the bucket owner and KMS key on every call, no credential anywhere, local copies
of what this process wrote, ranged reads of a source's schema, and clients made once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster_aws.s3 import S3Resource

from bedrock_assets.sources import read_columns, resolve_files
from bedrock_assets.storage import S3Access, Stored, UploadBehind, uploaded_behind
from bedrock_assets.uris import S3Location
from bedrock_assets_tests.helpers import NO_RECOURSE, S3Calls, ledger_of, pipeline_dict, run

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
    writes = [params for op, params in CALLS if op in ("PutObject", "CreateMultipartUpload", "CopyObject")]
    assert writes and all(p.get("SSEKMSKeyId") == KEY and p.get("ServerSideEncryption") == "aws:kms" for p in writes)
    copies = [params for op, params in CALLS if op == "CopyObject"]  # jsonl_shards' copies of the staged lines
    assert copies and all(p.get("ExpectedSourceBucketOwner") == OWNER for p in copies)
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


def test_the_source_schema_is_read_with_ranged_gets_not_a_download(stack, bucket, tmp_path):
    client = boto3.client("s3")
    calls = S3Calls(client)
    path = tmp_path / "big.parquet"
    distinct = [f"{i:010d}" * 30 for i in range(50_000)]  # 15 MB that neither dictionaries nor codecs shrink
    pq.write_table(pa.table({"task": distinct, "source": distinct}), path, compression="none", use_dictionary=False)
    boto3.client("s3").upload_file(str(path), bucket, "raw/big.parquet")
    (file,) = resolve_files(f"s3://{bucket}/raw/big.parquet", None, S3Access(client))
    assert read_columns(file, S3Access(client)) == ["task", "source"]
    assert len(calls.gets) <= 2 and all(status == 206 for status, _ in calls.gets)
    assert sum(size for _, size in calls.gets) < file.size / 10


def test_line_chunks_end_on_line_boundaries_and_lose_nothing(s3, bucket):
    from bedrock_assets.storage import iter_line_chunks

    # lines shorter and (every 17th) longer than a read, and no final newline
    body = b"\n".join(f'{{"n": {i}, "pad": "{"x" * (i % 13 + 90 * (i % 17 == 0))}"}}'.encode() for i in range(200))
    s3.put_object(Bucket=bucket, Key="out/x.jsonl.out", Body=body)
    chunks = list(iter_line_chunks(S3Access(s3), S3Location(bucket, "out/x.jsonl.out"), chunk_bytes=37))
    assert all(bytes(c).endswith(b"\n") for c in chunks) and len(chunks) > 10
    assert b"".join(chunks) == body + b"\n"


def test_uploads_run_behind_the_next_item_and_each_result_comes_once_stored():
    worked = {n: threading.Event() for n in range(3)}
    stored: list[int] = []

    def upload(n: int) -> None:
        if n + 1 in worked:  # in sequence this would wait in vain: the next item is worked on meanwhile
            assert worked[n + 1].wait(10), f"item {n + 1} was not worked on while {n} uploaded"
        stored.append(n)

    def work() -> Iterator[Stored[int]]:
        for n in range(3):
            worked[n].set()
            yield Stored(n, partial(upload, n))

    seen = []
    for n in uploaded_behind(work()):
        assert n in stored  # a result comes only once its upload is done
        seen.append(n)
    assert seen == stored == [0, 1, 2]


def test_a_failed_upload_surfaces_in_order_and_the_item_worked_on_meanwhile_is_discarded():
    discarded, uploaded = [], []

    def upload(n: int) -> None:
        if n == 1:
            raise RuntimeError(f"PUT {n} failed")
        uploaded.append(n)

    work = (Stored(n, partial(upload, n), partial(discarded.append, n)) for n in range(4))
    results = uploaded_behind(work)
    assert next(results) == 0
    with pytest.raises(RuntimeError, match="PUT 1 failed"):
        next(results)
    assert uploaded == [0] and discarded == [2]  # item 2 was ready when 1 failed; 3 was never worked on


def test_pushed_uploads_run_one_at_a_time_and_an_error_surfaces_at_the_next_send():
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow(name: str) -> None:
        started.set()
        release.wait(10)
        done.append(name)

    def failing() -> None:
        raise RuntimeError("PUT b failed")

    with UploadBehind() as uploads:
        uploads.send(partial(slow, "a"))
        assert started.wait(10) and done == []  # send returns while the upload runs
        release.set()
        uploads.send(failing)  # waits for a first: one in flight
        assert done == ["a"]
        with pytest.raises(RuntimeError, match="PUT b failed"):
            uploads.send(partial(done.append, "c"))
        uploads.wait()  # the error was reported once; nothing is pending
    assert done == ["a"]
