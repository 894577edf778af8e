"""One pipeline as its steps see it: S3 with the pipeline's owner and KMS key, quotas and price after overrides."""

from __future__ import annotations

from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.pipeline import Pipeline
from bedrock_assets_tests.helpers import CLAUDE, one_spec, pipeline_dict

OWNER, OTHER = "123456789012", "210987654321"


def test_the_pipelines_owner_and_key_win_over_the_resources_and_both_reach_every_call():
    bedrock = BedrockBatchResource(expected_bucket_owner=OTHER, output_kms_key_id="alias/resource")
    own = Pipeline.of(one_spec(pipeline_dict("own", "bkt", expected_bucket_owner=OWNER, kms_key_id="alias/own")))
    step = own.step(S3Resource(region_name="us-east-1"), bedrock)
    assert step.s3.read_args() == {"ExpectedBucketOwner": OWNER}
    assert step.s3.write_args() == {
        "ExpectedBucketOwner": OWNER,
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/own",
    }
    inherits = Pipeline.of(one_spec(pipeline_dict("inherits", "bkt"))).step(
        S3Resource(region_name="us-east-1"), bedrock
    )
    assert inherits.s3.write_args()["ExpectedBucketOwner"] == OTHER
    assert inherits.s3.write_args()["SSEKMSKeyId"] == "alias/resource"


def test_a_step_has_the_models_quotas_and_price_after_the_resources_overrides_and_the_spec_narrows_them():
    spec = one_spec(pipeline_dict("narrow", "bkt", shards={"max_records": 200}))
    p = Pipeline.of(spec)
    bedrock = BedrockBatchResource(
        quota_overrides={CLAUDE: {"max_concurrent_jobs": 3}},
        price_overrides={CLAUDE: {"batch_input": 0.5, "batch_output": 1.0}},
    )
    step = p.bound(None, bedrock)  # type: ignore[arg-type]
    assert (step.quotas.max_concurrent_jobs, step.quotas.max_records_per_shard) == (3, 200)
    assert step.price is not None and (step.price.batch.input, step.price.batch.output) == (0.5, 1.0)
    assert step.adapter is p.adapter  # the adapter (and its output_schema) is built once per pipeline
    assert (step.name, step.keys.partitions, step.layout.root.uri) == (
        "narrow",
        "narrow__shards",
        "s3://bkt/out/narrow",
    )
