"""The Bedrock batch resource: quota-aware, idempotent job submission and job listing.

Plain boto3 underneath; endpoints, credentials and region come from the standard AWS configuration
(``AWS_ENDPOINT_URL_BEDROCK`` / ``AWS_ENDPOINT_URL``, profiles, ``AWS_REGION``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from dagster import ConfigurableResource
from pydantic import Field

from bedrock_assets.ledger import IN_FLIGHT, QUEUED, SUBMIT_FAILED, SUBMITTING, JobLedger, LedgerConflict, now_iso
from bedrock_assets.quotas import BatchQuotas, base_model_id
from bedrock_assets.uris import validate_job_name, validate_request_token

# A job in flight was submitted at most its timeout (<= 168 h) ago; list a little further back.
LOOKBACK = timedelta(hours=170)
RESUBMITTABLE = ("Failed", "Stopped", "Expired", SUBMIT_FAILED)


def model_key(model_id: str) -> str:
    """Comparable model identity: ARNs and inference-profile prefixes reduce to the base id."""
    return base_model_id(model_id.rsplit("/", 1)[-1])


def job_name(prefix: str, shard: str, digest: str, attempt: int) -> str:
    name = f"{prefix}-{shard}-{digest[:10]}" + (f"-a{attempt}" if attempt > 1 else "")
    return validate_job_name(name)


def request_token(name: str, input_uri: str, output_uri: str) -> str:
    """Deterministic clientRequestToken for one request: a retried create returns the same job."""
    return validate_request_token(hashlib.sha256(f"{name}\n{input_uri}\n{output_uri}".encode()).hexdigest()[:40])


@dataclass
class CallCounter:
    """Control-plane calls made, by operation (for reports and the benchmark)."""

    calls: dict[str, int] = field(default_factory=dict)

    def add(self, op: str, n: int = 1) -> None:
        self.calls[op] = self.calls.get(op, 0) + n


class BedrockBatchResource(ConfigurableResource):
    """Amazon Bedrock batch inference: submission settings shared by every pipeline."""

    region_name: Optional[str] = Field(default=None, description="region; boto3's default chain if unset")
    profile_name: Optional[str] = None
    role_arn: Optional[str] = Field(default=None, description="service role for pipelines that set none")
    quota_overrides: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per model id: e.g. {max_concurrent_jobs: 10, min_records_per_job: 50}"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="added to every job")
    output_kms_key_id: Optional[str] = None
    vpc_subnet_ids: list[str] = Field(default_factory=list)
    vpc_security_group_ids: list[str] = Field(default_factory=list)
    expected_bucket_owner: Optional[str] = Field(default=None, description="s3BucketOwner for input and output")
    max_attempts: int = Field(default=8, description="botocore retries (throttling, 5xx)")

    def client(self) -> Any:
        session = boto3.session.Session(profile_name=self.profile_name, region_name=self.region_name)
        return session.client("bedrock", config=Config(retries={"mode": "standard", "max_attempts": self.max_attempts}))

    def recent_jobs(self, client: Any, counter: CallCounter | None = None) -> list[dict[str, Any]]:
        """All jobs submitted in the lookback window, ours or not: one paginated list."""
        after = datetime.now(timezone.utc) - LOOKBACK
        jobs: list[dict[str, Any]] = []
        for page in client.get_paginator("list_model_invocation_jobs").paginate(
            submitTimeAfter=after, PaginationConfig={"PageSize": 1000}
        ):
            if counter:
                counter.add("ListModelInvocationJobs")
            jobs.extend(page.get("invocationJobSummaries", []))
        return jobs

    def job_request(
        self, *, name: str, model_id: str, invocation_type: str, role_arn: str | None, input_uri: str,
        output_uri: str, timeout_hours: int, tags: dict[str, str],
    ) -> dict[str, Any]:
        role = role_arn or self.role_arn
        if not role:
            raise ValueError("no role_arn: set it in the pipeline spec or on the bedrock resource")
        owner = {"s3BucketOwner": self.expected_bucket_owner} if self.expected_bucket_owner else {}
        output: dict[str, Any] = {"s3Uri": output_uri, **owner}
        if self.output_kms_key_id:
            output["s3EncryptionKeyId"] = self.output_kms_key_id
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
        if all_tags:
            request["tags"] = [{"key": k, "value": v} for k, v in sorted(all_tags.items())]
        if self.vpc_subnet_ids:
            request["vpcConfig"] = {"subnetIds": self.vpc_subnet_ids, "securityGroupIds": self.vpc_security_group_ids}
        return request


@dataclass
class ShardToSubmit:
    shard: str
    digest: str
    records: int
    input_uri: str
    output_uri: str


@dataclass
class SubmitOutcome:
    shard: str
    attempt: int
    job_name: str
    status: str  # Submitted / an existing job's status / Queued / SubmitFailed
    job_arn: str | None = None
    detail: str = ""


@dataclass
class JobSettings:
    pipeline: str
    prefix: str
    model_id: str
    invocation_type: str
    role_arn: str | None
    timeout_hours: int
    tags: dict[str, str]
    quotas: BatchQuotas


def _input_uri(job: dict[str, Any]) -> str:
    return job.get("inputDataConfig", {}).get("s3InputDataConfig", {}).get("s3Uri", "")


def in_flight_count(jobs: list[dict[str, Any]], model_id: str) -> int:
    key = model_key(model_id)
    return sum(1 for j in jobs if j.get("status") in IN_FLIGHT and model_key(j.get("modelId", "")) == key)


def submit_shards(
    bedrock: BedrockBatchResource, ledger: JobLedger, settings: JobSettings, shards: list[ShardToSubmit],
    counter: CallCounter | None = None,
) -> list[SubmitOutcome]:
    """Submit each shard's job unless it already has one; queue shards that find no free slot.

    Idempotent: a shard whose latest attempt has a live or finished job for the same input is
    re-attached, never resubmitted; a job created before a crash is found by its name; the
    deterministic clientRequestToken makes a retried create return the same job.
    """
    client = bedrock.client()
    jobs = bedrock.recent_jobs(client, counter)
    by_name = {j["jobName"]: j for j in jobs}
    free = settings.quotas.max_concurrent_jobs - in_flight_count(jobs, settings.model_id)
    outcomes = []
    for shard in shards:
        latest = ledger.latest(settings.pipeline, shard.shard)
        attempt = 1
        if latest is not None:
            same_input = latest.get("input_digest") == shard.digest
            if same_input and latest.get("job_arn") and latest["status"] not in RESUBMITTABLE:
                outcomes.append(SubmitOutcome(shard.shard, latest["attempt"], latest["job_name"], latest["status"],
                                              latest["job_arn"], "already submitted; re-attached"))
                continue
            reuse = same_input and latest["status"] in (QUEUED, SUBMITTING)
            attempt = latest["attempt"] if reuse else latest["attempt"] + 1
        name = job_name(settings.prefix, shard.shard, shard.digest, attempt)
        if latest is None or latest["attempt"] != attempt:
            try:
                ledger.create({
                    "pipeline": settings.pipeline, "shard": shard.shard, "attempt": attempt, "job_name": name,
                    "input_digest": shard.digest, "model_id": settings.model_id, "status": QUEUED,
                    "records": shard.records, "input_uri": shard.input_uri, "output_uri": shard.output_uri,
                    "created_at": now_iso(), "outputs_requested": False,
                })
            except LedgerConflict:
                pass  # a concurrent run created this attempt; continue with it
        existing = by_name.get(name)
        if existing is not None and _input_uri(existing) != shard.input_uri:
            detail = (f"job name {name} is taken by a job reading {_input_uri(existing)}, not {shard.input_uri}; "
                      "set a distinct job_name_prefix for this pipeline")
            ledger.update(settings.pipeline, shard.shard, attempt, status=SUBMIT_FAILED, message=detail)
            outcomes.append(SubmitOutcome(shard.shard, attempt, name, SUBMIT_FAILED, None, detail))
            continue
        if existing is not None:  # created earlier (e.g. crash before the ledger write): attach
            ledger.update(settings.pipeline, shard.shard, attempt, status=existing["status"],
                          job_arn=existing["jobArn"], submitted_at=now_iso())
            outcomes.append(SubmitOutcome(shard.shard, attempt, name, existing["status"], existing["jobArn"],
                                          "found existing job by name; re-attached"))
            continue
        if free <= 0:
            ledger.update(settings.pipeline, shard.shard, attempt, status=QUEUED, queued_at=now_iso())
            outcomes.append(SubmitOutcome(shard.shard, attempt, name, QUEUED, None,
                                          f"no free slot ({settings.quotas.max_concurrent_jobs} jobs in flight)"))
            continue
        try:  # claim the submission: only one run may move this attempt from Queued to Submitting
            ledger.update(settings.pipeline, shard.shard, attempt, expect_status=(QUEUED, SUBMITTING),
                          status=SUBMITTING)
        except LedgerConflict:
            current = ledger.latest(settings.pipeline, shard.shard) or {}
            outcomes.append(SubmitOutcome(shard.shard, attempt, name, current.get("status", "?"),
                                          current.get("job_arn"), "submitted by a concurrent run"))
            continue
        outcomes.append(_create(client, bedrock, ledger, settings, shard, attempt, name, counter))
        if outcomes[-1].status == QUEUED:
            free = 0
        elif outcomes[-1].job_arn:
            free -= 1
    return outcomes


def _create(
    client: Any, bedrock: BedrockBatchResource, ledger: JobLedger, settings: JobSettings, shard: ShardToSubmit,
    attempt: int, name: str, counter: CallCounter | None,
) -> SubmitOutcome:
    request = bedrock.job_request(
        name=name, model_id=settings.model_id, invocation_type=settings.invocation_type,
        role_arn=settings.role_arn, input_uri=shard.input_uri, output_uri=shard.output_uri,
        timeout_hours=settings.timeout_hours,
        tags={**settings.tags, "bedrock-assets:pipeline": settings.pipeline, "bedrock-assets:shard": shard.shard},
    )
    if counter:
        counter.add("CreateModelInvocationJob")
    try:
        arn = client.create_model_invocation_job(**request)["jobArn"]
    except ClientError as e:
        code = e.response["Error"]["Code"]
        message = e.response["Error"].get("Message", "")
        if code in ("ServiceQuotaExceededException", "ThrottlingException"):
            ledger.update(settings.pipeline, shard.shard, attempt, status=QUEUED, queued_at=now_iso(),
                          message=f"{code}: {message}")
            return SubmitOutcome(shard.shard, attempt, name, QUEUED, None, f"{code}: {message}")
        ledger.update(settings.pipeline, shard.shard, attempt, status=SUBMIT_FAILED, message=f"{code}: {message}")
        return SubmitOutcome(shard.shard, attempt, name, SUBMIT_FAILED, None, f"{code}: {message}")
    ledger.update(settings.pipeline, shard.shard, attempt, status="Submitted", job_arn=arn, submitted_at=now_iso())
    return SubmitOutcome(shard.shard, attempt, name, "Submitted", arn)
