"""The Bedrock resource: the CreateModelInvocationJob request it makes, and what List/Get say of a job."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter, JobSummary, slots_in_use

ROLE = "arn:aws:iam::123456789012:role/Batch"
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"


def request(resource: BedrockBatchResource, **overrides):
    args = dict(
        name="cot-s00000-0123456789",
        model_id=CLAUDE,
        invocation_type="InvokeModel",
        role_arn=ROLE,
        input_uri="s3://b/shards/s00000/input.jsonl",
        output_uri="s3://b/jobs/s00000",
        timeout_hours=24,
        tags={"team": "ml"},
    )
    return resource.job_request(**{**args, **overrides})


def test_the_request_carries_owner_kms_tags_and_vpc_and_a_deterministic_token():
    resource = BedrockBatchResource(
        tags={"cost-center": "42"},
        expected_bucket_owner="123456789012",
        output_kms_key_id="alias/k",
        vpc_subnet_ids=["subnet-1"],
        vpc_security_group_ids=["sg-1"],
    )
    body = request(resource)
    assert body["inputDataConfig"]["s3InputDataConfig"]["s3BucketOwner"] == "123456789012"
    assert body["outputDataConfig"]["s3OutputDataConfig"] == {
        "s3Uri": "s3://b/jobs/s00000",
        "s3BucketOwner": "123456789012",
        "s3EncryptionKeyId": "alias/k",
    }
    assert body["tags"] == [{"key": "cost-center", "value": "42"}, {"key": "team", "value": "ml"}]
    assert body["vpcConfig"] == {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]}
    assert body["clientRequestToken"] == request(resource)["clientRequestToken"]


def test_a_pipeline_without_a_role_and_a_resource_without_one_is_told_where_to_set_it():
    with pytest.raises(ValueError, match="no role_arn: set it in the pipeline's defs.yaml or on the bedrock resource"):
        request(BedrockBatchResource(), role_arn=None)
    assert request(BedrockBatchResource(role_arn=ROLE), role_arn=None)["roleArn"] == ROLE


def test_a_listed_job_is_read_as_a_summary_and_slots_count_every_job_of_the_model():
    job = JobSummary.from_api(
        {
            "jobArn": "arn:j",
            "jobName": "x",
            "modelId": f"us.{CLAUDE}",
            "status": "InProgress",
            "endTime": datetime(2026, 1, 1, tzinfo=UTC),
            "processedRecordCount": 7,
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://b/i"}},
        }
    )
    assert (job.status, job.input_uri, job.end_time, job.counts["processedRecordCount"]) == (
        JobStatus.IN_PROGRESS,
        "s3://b/i",
        "2026-01-01T00:00:00+00:00",
        7,
    )
    other = JobSummary("arn:o", "o", "amazon.nova-lite-v1:0", JobStatus.SUBMITTED)
    done = JobSummary("arn:d", "d", CLAUDE, JobStatus.COMPLETED)
    assert slots_in_use([job, other, done], CLAUDE) == 1


def test_calls_travel_as_metadata():
    counter = CallCounter()
    counter.add("CreateModelInvocationJob", 2)
    total = CallCounter()
    total.add_metadata(counter.metadata())
    total.add_metadata({})
    assert total.calls == {"CreateModelInvocationJob": 2}
