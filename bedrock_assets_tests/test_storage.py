"""S3 as the pipeline uses it: the bucket owner and KMS key on every call, and no credential anywhere."""

from __future__ import annotations

import dagster as dg
from dagster_aws.s3 import S3Resource

from bedrock_assets.storage import S3Access
from bedrock_assets_tests.conftest import NO_RECOURSE, ledger_of, pipeline_dict, run

OWNER = "123456789012"
KEY = "alias/bedrock-assets-test"
CALLS: list[tuple[str, dict]] = []


class RecordingS3(S3Resource):
    """dagster-aws's S3Resource whose clients record every call they make."""

    def get_client(self):
        client = super().get_client()
        client.meta.events.register(
            "before-parameter-build.s3.*", lambda model, params, **_: CALLS.append((model.name, dict(params)))
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
    summary = run(defs, spec, instance)
    assert summary.succeeded == 300 and len(CALLS) > 20
    missing = [(op, sorted(params)) for op, params in CALLS if params.get("ExpectedBucketOwner") != OWNER]
    assert missing == []
    writes = [params for op, params in CALLS if op in ("PutObject", "CreateMultipartUpload")]
    assert writes and all(p.get("SSEKMSKeyId") == KEY and p.get("ServerSideEncryption") == "aws:kms" for p in writes)
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
