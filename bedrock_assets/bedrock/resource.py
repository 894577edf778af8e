"""The Bedrock batch resource: account-wide submission settings and the control-plane client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import MetadataValue
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field

from bedrock_assets.aws import boto3_session, client_args, shared
from bedrock_assets.bedrock.job_list import job_list_of
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.model_ids import model_key
from bedrock_assets.bedrock.naming import check_tag, request_token

# A job in flight was submitted at most its timeout (<= 168 h) ago; list a little further back.
LOOKBACK = timedelta(hours=170)


@dataclass
class CallCounter:
    """Control-plane calls made, by operation (for reports and the benchmark). A step or tick records its
    calls as metadata (``metadata()``); the headless runner adds them up (``add_metadata``)."""

    calls: dict[str, int] = field(default_factory=dict)

    METADATA_KEY = "bedrock_calls"

    def add(self, op: str, n: int = 1) -> None:
        self.calls[op] = self.calls.get(op, 0) + n

    def merge(self, other: Mapping[str, int]) -> None:
        for op, n in other.items():
            self.add(op, n)

    def metadata(self) -> dict[str, Any]:
        return {self.METADATA_KEY: MetadataValue.json(dict(self.calls))}

    def add_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Add the calls recorded in a step's or tick's metadata (none recorded: nothing)."""
        if self.METADATA_KEY in metadata:
            self.merge(metadata[self.METADATA_KEY].value)


@dataclass(frozen=True)
class JobSummary:
    """What Get/ListModelInvocationJobs say about one job (the fields we use)."""

    job_arn: str
    job_name: str
    model_id: str
    status: JobStatus
    input_uri: str = ""
    message: str | None = None
    end_time: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    submit_time: datetime | None = None

    @classmethod
    def from_api(cls, job: dict[str, Any]) -> JobSummary:
        end, submitted = job.get("endTime"), job.get("submitTime")
        return cls(
            job_arn=job["jobArn"],
            job_name=job.get("jobName", ""),
            model_id=job.get("modelId", ""),
            status=JobStatus(job["status"]),
            input_uri=job.get("inputDataConfig", {}).get("s3InputDataConfig", {}).get("s3Uri", ""),
            message=job.get("message") or None,
            end_time=end.isoformat() if isinstance(end, datetime) else end,
            counts={
                k: int(job.get(k, 0))
                for k in ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
            },
            submit_time=submitted if isinstance(submitted, datetime) else None,
        )


def slots_in_use(jobs: list[JobSummary], model_id: str) -> int:
    """Jobs of this model (ours or anyone's) that count against its concurrent-job quota."""
    key = model_key(model_id)
    return sum(1 for j in jobs if j.status.holds_slot and model_key(j.model_id) == key)


class BedrockBatchResource(ResourceWithBoto3Configuration):
    """Amazon Bedrock batch inference: the control-plane client and settings shared by every pipeline."""

    max_attempts: int = Field(default=8, description="botocore retries (throttling, 5xx)")
    poll_seconds: float = Field(
        default=30.0,
        ge=0,
        description="shortest time between two polls of the jobs' states (the completion sensor ticks more "
        "often, acting on what Dagster finished at once; bedrock-assets run sets it to its --poll-seconds)",
    )
    role_arn: str | None = Field(default=None, description="service role for pipelines that set none")
    batch_metrics: bool = Field(
        default=True,
        description="read each model's account-wide batch backlog from CloudWatch (AWS/Bedrock/Batch, one "
        "GetMetricData per poll; needs cloudwatch:GetMetricData, else it is a note)",
    )
    quota_overrides: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per model id: e.g. {max_concurrent_jobs: 10, min_records_per_job: 50}"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="added to every job")
    price_overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per model id, USD per 1,000 tokens: on_demand_input, on_demand_output, batch_input, "
        "batch_output (replaces bedrock/prices.json)",
    )
    output_kms_key_id: str | None = Field(
        default=None, description="KMS key for everything written to S3 (the job's output and our own objects)"
    )
    vpc_subnet_ids: list[str] = Field(default_factory=list)
    vpc_security_group_ids: list[str] = Field(default_factory=list)
    expected_bucket_owner: str | None = Field(
        default=None, description="account that must own every bucket touched (ExpectedBucketOwner, s3BucketOwner)"
    )

    def get_client(self) -> Any:
        """The ``bedrock`` control-plane client (CreateModelInvocationJob and friends)."""
        return shared("bedrock", self, lambda: boto3_session(self).client("bedrock", **client_args(self)))

    def get_runtime_client(self) -> Any:
        """The ``bedrock-runtime`` client (InvokeModel, Converse) for on-demand calls, configured alike."""
        return shared(
            "bedrock-runtime", self, lambda: boto3_session(self).client("bedrock-runtime", **client_args(self))
        )

    def get_cloudwatch_client(self) -> Any:
        """The ``cloudwatch`` client (the batch metrics), configured alike."""
        return shared("cloudwatch", self, lambda: boto3_session(self).client("cloudwatch", **client_args(self)))

    def recent_jobs(self, client: Any, counter: CallCounter | None = None) -> list[JobSummary]:
        """All jobs submitted in the lookback window, ours or not: one paginated list, after the first in this
        process only of the jobs that can have changed since the last (``job_list``)."""
        return job_list_of(client).listed(LOOKBACK, lambda after: self._jobs_after(client, after, counter))

    def _jobs_after(self, client: Any, after: datetime, counter: CallCounter | None) -> list[JobSummary]:
        jobs: list[JobSummary] = []
        for page in client.get_paginator("list_model_invocation_jobs").paginate(
            submitTimeAfter=after, PaginationConfig={"PageSize": 1000}
        ):
            if counter:
                counter.add("ListModelInvocationJobs")
            jobs.extend(JobSummary.from_api(j) for j in page.get("invocationJobSummaries", []))
        return jobs

    def find_job(self, client: Any, name: str, counter: CallCounter | None = None) -> JobSummary | None:
        """The job of this exact name submitted in the lookback window, or None (one paginated list)."""
        after = datetime.now(UTC) - LOOKBACK
        for page in client.get_paginator("list_model_invocation_jobs").paginate(
            submitTimeAfter=after, nameContains=name, PaginationConfig={"PageSize": 1000}
        ):
            if counter:
                counter.add("ListModelInvocationJobs")
            for job in page.get("invocationJobSummaries", []):
                if job.get("jobName") == name:
                    return JobSummary.from_api(job)
        return None

    def get_job(self, client: Any, job_arn: str, counter: CallCounter | None = None) -> JobSummary:
        if counter:
            counter.add("GetModelInvocationJob")
        return JobSummary.from_api(client.get_model_invocation_job(jobIdentifier=job_arn))

    def job_request(
        self,
        *,
        name: str,
        model_id: str,
        invocation_type: str,
        role_arn: str | None,
        input_uri: str,
        output_uri: str,
        timeout_hours: int,
        tags: dict[str, str],
        expected_bucket_owner: str | None = None,
        kms_key_id: str | None = None,
    ) -> dict[str, Any]:
        """The CreateModelInvocationJob request; the pipeline's owner/KMS settings, else this resource's."""
        role = role_arn or self.role_arn
        if not role:
            raise ValueError("no role_arn: set it in the pipeline's defs.yaml or on the bedrock resource")
        bucket_owner = expected_bucket_owner or self.expected_bucket_owner
        kms = kms_key_id or self.output_kms_key_id
        owner = {"s3BucketOwner": bucket_owner} if bucket_owner else {}
        output: dict[str, Any] = {"s3Uri": output_uri, **owner}
        if kms:
            output["s3EncryptionKeyId"] = kms
        request: dict[str, Any] = {
            "jobName": name,
            "clientRequestToken": request_token(name, input_uri, output_uri),
            "roleArn": role,
            "modelId": model_id,
            "inputDataConfig": {"s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": input_uri, **owner}},
            "outputDataConfig": {"s3OutputDataConfig": output},
            "timeoutDurationInHours": timeout_hours,
            "modelInvocationType": invocation_type,
        }
        all_tags = {**self.tags, **tags}
        for key, value in all_tags.items():
            check_tag(key, value)
        if all_tags:
            request["tags"] = [{"key": k, "value": v} for k, v in sorted(all_tags.items())]
        if self.vpc_subnet_ids:
            request["vpcConfig"] = {"subnetIds": self.vpc_subnet_ids, "securityGroupIds": self.vpc_security_group_ids}
        return request
