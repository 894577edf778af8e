"""Bedrock batch-inference job emulator: state machine and API semantics (no HTTP here).

Job state is advanced lazily: whenever a request observes a job, its status is recomputed from
the clock (each phase lasts the job's ``time_scale`` seconds). Input validation happens at the
Validating -> Scheduled step and the outputs are written to S3 when the job reaches its terminal
state (Completed / PartiallyCompleted, or Stopped after a stop requested while InProgress: partial
output), so all side effects happen inside API calls and no background thread is needed.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import hashlib
import itertools
import json
import os
import secrets
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.bedrock.job_status import JobStatus

from .bulk import in_bulk_shape, synthesize_bulk
from .errors import EmulatorError
from .faults import FaultConfig
from .job_requests import int_param, parse_time, validate_create, validation_error
from .runtime import RuntimeEmulator
from .synthetic import INPUT_TOO_LONG, synthesize_batch

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"

ACTIVE_STATUSES = frozenset(s.value for s in JobStatus if s.holds_slot)
TERMINAL_STATUSES = frozenset(s.value for s in JobStatus if s.is_terminal and s.is_bedrock)
ALL_STATUSES = frozenset(JobStatus.bedrock_values())

JOB_ID_ALPHABET = string.ascii_lowercase + string.digits

MAX_RECORDS_PER_FILE = 50_000
MAX_RECORDS_PER_JOB = 50_000
MAX_FILE_BYTES = 1024**3
MAX_JOB_BYTES = 5 * 1024**3
CHUNK_RECORDS = 2048
READ_BYTES = 1 << 24
BATCH_METRICS = "AWS/Bedrock/Batch"  # the CloudWatch namespace of the batch metrics, dimension ModelId
METRICS_SECONDS = 60.0  # the batch metrics are published at most this often, as the service does (per minute)
BULK_BYTES = 1 << 30  # larger chunks are answered one by one (Arrow's string arrays hold up to 2 GB)
# how a record line in compact form starts when json.dumps writes its recordId as it is
RECORD_START = r'^\{"recordId":"[ !#-\[\]-~]+","modelInput":\{'


class JobFailure(Exception):
    """Raised inside the state machine when a job must end as Failed with a message."""


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO8601 UTC with milliseconds (what the service returns)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _unit_hash(*parts: str) -> float:
    """Deterministic number in [0, 1) from the given strings."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class BatchJobEmulator:
    """Emulates CreateModelInvocationJob / Get / List / Stop for one account.

    ``runtime`` (a RuntimeEmulator sharing the fault knobs) answers bedrock-runtime InvokeModel/Converse.

    ``s3`` is a boto3 S3 client used to read inputs and write outputs (set it before jobs run).
    If ``state_file`` is given, the job table is loaded from it and saved after every mutation.
    """

    def __init__(
        self,
        s3: Any | None = None,
        *,
        time_scale: float = 0.2,
        faults: FaultConfig | None = None,
        concurrency_limits: dict[str, int] | None = None,
        default_concurrency_limit: int = 20,
        state_file: Path | None = None,
        account_id: str = ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.s3 = s3
        self.time_scale = float(time_scale)
        self.faults = faults or FaultConfig()
        self.concurrency_limits: dict[str, int] = dict(concurrency_limits or {})
        self.default_concurrency_limit = int(default_concurrency_limit)
        self.state_file = Path(state_file) if state_file else None
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._calls = 0
        self._operations: dict[str, int] = {}
        self.runtime = RuntimeEmulator(self.faults, clock)
        self.cloudwatch: Any | None = None  # a CloudWatch client: the batch metrics are published to it
        self.metrics_seconds = METRICS_SECONDS
        self._published_at = float("-inf")
        self._tokens_unpublished: dict[str, list[int]] = {}  # model -> [input, output] tokens of jobs that ended
        if self.state_file and self.state_file.exists():
            self._jobs = json.loads(self.state_file.read_text())["jobs"]

    # ---- configuration ----------------------------------------------------------------------

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Update fault knobs, ``time_scale``, ``concurrency_limits`` (merged; a None value
        removes an override) and ``default_concurrency_limit``. Returns the new config."""
        with self._lock:
            fault_knobs = {k: v for k, v in knobs.items() if k in FaultConfig.names()}
            other = (
                set(knobs)
                - set(fault_knobs)
                - {
                    "time_scale",
                    "concurrency_limits",
                    "default_concurrency_limit",
                    "metrics_seconds",
                }
            )
            if other:
                raise ValueError(f"unknown emulator setting(s): {sorted(other)}")
            dataclasses.replace(self.faults).update(**fault_knobs)  # validate before applying anything
            if float(knobs.get("time_scale", 0)) < 0:
                raise ValueError("time_scale must be >= 0")
            self.faults.update(**fault_knobs)
            if "throttle_every" in fault_knobs:
                self._calls = 0
                self.runtime.reset_throttle()
            if "time_scale" in knobs:
                self.time_scale = float(knobs["time_scale"])
            for model_id, limit in (knobs.get("concurrency_limits") or {}).items():
                if limit is None:
                    self.concurrency_limits.pop(model_id, None)
                else:
                    self.concurrency_limits[model_id] = int(limit)
            if "default_concurrency_limit" in knobs:
                self.default_concurrency_limit = int(knobs["default_concurrency_limit"])
            if "metrics_seconds" in knobs:
                self.metrics_seconds = float(knobs["metrics_seconds"])
            return self.config()

    def config(self) -> dict[str, Any]:
        """Current settings as a JSON-friendly dict."""
        return {
            **self.faults.to_dict(),
            "time_scale": self.time_scale,
            "concurrency_limits": dict(self.concurrency_limits),
            "default_concurrency_limit": self.default_concurrency_limit,
            "metrics_seconds": self.metrics_seconds,
        }

    def expedite(self, identifier: str | None = None) -> int:
        """Let one unfinished job (or all) reach its next states at once (time_scale 0); for tests."""
        with self._lock:
            jobs = [self._find(identifier)] if identifier else list(self._jobs.values())
            active = [j for j in jobs if j["status"] in ACTIVE_STATUSES]
            for job in active:
                job["timeScale"] = 0.0
            self._save()
            return len(active)

    def job_count(self) -> int:
        """Number of jobs known to the emulator."""
        return len(self._jobs)

    def control_plane_calls(self) -> dict[str, int]:
        """Calls received so far per operation (``CreateModelInvocationJob``...), refused ones included."""
        with self._lock:
            return dict(self._operations)

    def runtime_calls(self) -> dict[str, int]:
        """bedrock-runtime calls received so far per operation: ``{"InvokeModel": n, "Converse": m}``."""
        return self.runtime.calls()

    # ---- API operations ---------------------------------------------------------------------

    def create(self, body: dict, region: str | None = None) -> dict:
        """CreateModelInvocationJob: validate, dedupe by token, enforce quota; returns {jobArn}.

        The fault knobs ``lose_create_responses`` and ``create_delay`` act once the job exists.
        """
        answer = self._create(body, region)
        if self.faults.create_delay:
            time.sleep(self.faults.create_delay)
        with self._lock:
            if self.faults.lose_create_responses > 0:
                self.faults.lose_create_responses -= 1
                raise EmulatorError("InternalServerException", "Internal server error (emulated: the job exists).", 500)
        return answer

    def _create(self, body: dict, region: str | None) -> dict:
        with self._lock:
            self._tick("CreateModelInvocationJob")
            req = validate_create(body)
            token = req["clientRequestToken"]
            for job in self._jobs.values():
                if token and job["clientRequestToken"] == token:
                    return {"jobArn": job["jobArn"]}
            for job in self._jobs.values():
                if job["jobName"] == req["jobName"]:
                    raise EmulatorError(
                        "ConflictException",
                        f"A batch inference job with name '{req['jobName']}' already exists.",
                        400,
                    )
            input_files = self._list_input_files(req["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
            self._advance_all()
            model_id = req["modelId"]
            active = sum(1 for j in self._jobs.values() if j["modelId"] == model_id and j["status"] in ACTIVE_STATUSES)
            limit = self.concurrency_limits.get(model_id, self.default_concurrency_limit)
            if active >= limit:
                raise EmulatorError(
                    "ServiceQuotaExceededException",
                    f"The number of in-progress batch inference jobs for model {model_id} ({active}) has "
                    f"reached the quota of {limit} concurrent jobs. Wait for a job to finish and try again.",
                    400,
                )
            now = self.clock()
            region = region or self.region
            job_id = "".join(secrets.choice(JOB_ID_ALPHABET) for _ in range(12))
            while job_id in self._jobs:
                job_id = "".join(secrets.choice(JOB_ID_ALPHABET) for _ in range(12))
            timeout = req["timeoutDurationInHours"]
            self._jobs[job_id] = {
                "jobId": job_id,
                "jobArn": f"arn:aws:bedrock:{region}:{self.account_id}:model-invocation-job/{job_id}",
                "jobName": req["jobName"],
                "modelId": model_id,
                "clientRequestToken": token,
                "roleArn": req["roleArn"],
                "status": JobStatus.SUBMITTED.value,
                "message": None,
                "submitTime": now,
                "lastModifiedTime": now,
                "endTime": None,
                "phaseStart": now,
                "timeScale": self.time_scale,
                "inputDataConfig": req["inputDataConfig"],
                "outputDataConfig": req["outputDataConfig"],
                "vpcConfig": req.get("vpcConfig"),
                "timeoutDurationInHours": timeout,
                "jobExpirationTime": now + timeout * 3600,
                "modelInvocationType": req["modelInvocationType"],
                "tags": req.get("tags") or [],
                "inputFiles": input_files,
                "totalRecordCount": 0,
                "processedRecordCount": 0,
                "successRecordCount": 0,
                "errorRecordCount": 0,
            }
            self._save()
            return {"jobArn": self._jobs[job_id]["jobArn"]}

    def get(self, identifier: str) -> dict:
        """GetModelInvocationJob by job ARN or 12-character job id."""
        with self._lock:
            self._tick("GetModelInvocationJob")
            job = self._find(identifier)
            if self._advance(job):
                self._save()
            self._publish_metrics()
            return self._view(job)

    def list(self, params: dict) -> dict:
        """ListModelInvocationJobs with the documented filters, sorting and pagination."""
        with self._lock:
            self._tick("ListModelInvocationJobs")
            max_results = int_param(params, "maxResults", 1, 1000, default=None)
            status = params.get("statusEquals")
            if status is not None and status not in ALL_STATUSES:
                raise validation_error(f"statusEquals: '{status}' is not one of {sorted(ALL_STATUSES)}")
            sort_order = params.get("sortOrder", "Descending")
            if sort_order not in ("Ascending", "Descending"):
                raise validation_error("sortOrder: must be 'Ascending' or 'Descending'")
            if params.get("sortBy", "CreationTime") != "CreationTime":
                raise validation_error("sortBy: must be 'CreationTime'")
            after = parse_time(params["submitTimeAfter"], "submitTimeAfter") if params.get("submitTimeAfter") else None
            before = (
                parse_time(params["submitTimeBefore"], "submitTimeBefore") if params.get("submitTimeBefore") else None
            )
            name_contains = params.get("nameContains")
            if self._advance_all():
                self._save()
            self._publish_metrics()
            jobs = [
                j
                for j in self._jobs.values()
                if (status is None or j["status"] == status)
                and (after is None or j["submitTime"] >= after)
                and (before is None or j["submitTime"] <= before)
                and (not name_contains or name_contains in j["jobName"])
            ]
            jobs.sort(key=lambda j: (j["submitTime"], j["jobId"]), reverse=sort_order == "Descending")
            start = 0
            if params.get("nextToken"):
                try:
                    start = int(base64.urlsafe_b64decode(params["nextToken"].encode()).decode())
                except ValueError:
                    raise validation_error("nextToken: invalid pagination token") from None
            end = len(jobs) if max_results is None else start + max_results
            result: dict[str, Any] = {"invocationJobSummaries": [self._view(j) for j in jobs[start:end]]}
            if end < len(jobs):
                result["nextToken"] = base64.urlsafe_b64encode(str(end).encode()).decode()
            return result

    def stop(self, identifier: str) -> dict:
        """StopModelInvocationJob: active job -> Stopping -> Stopped; terminal job -> ValidationException.

        A job stopped while InProgress writes the records it processed before the stop when it
        reaches Stopped (see ``_process``); one stopped earlier writes nothing.
        """
        with self._lock:
            self._tick("StopModelInvocationJob")
            job = self._find(identifier)
            self._advance(job)
            if job["status"] in TERMINAL_STATUSES:
                self._save()
                raise validation_error(f"The job {job['jobArn']} is in status {job['status']} and cannot be stopped.")
            if job["status"] != JobStatus.STOPPING.value:
                now = self.clock()
                self._progress(job, now)
                job.update(
                    status=JobStatus.STOPPING.value,
                    stoppedFrom=job["status"],
                    phaseStart=now,
                    lastModifiedTime=now,
                    message="Stop requested by user.",
                )
            self._save()
            return {}

    # ---- CloudWatch batch metrics ---------------------------------------------------------------

    def _publish_metrics(self) -> None:
        """Publish ``AWS/Bedrock/Batch`` metrics per ``ModelId`` at most every ``metrics_seconds`` of the clock, as
        the service does for an account (https://aws.amazon.com/blogs/machine-learning/monitor-amazon-bedrock-
        batch-inference-using-amazon-cloudwatch-metrics/): the records its Scheduled and InProgress jobs have
        yet to process, and the input/output tokens of the jobs that ended since (per minute)."""
        now = self.clock()
        if self.cloudwatch is None or now - self._published_at < self.metrics_seconds:
            return
        minutes = max(now - self._published_at, 60.0) / 60 if self._published_at > 0 else 1.0
        self._published_at = now
        pending: dict[str, int] = {}
        for job in self._jobs.values():
            if job["status"] in (JobStatus.SCHEDULED.value, JobStatus.IN_PROGRESS.value):
                left = job["totalRecordCount"] - job["processedRecordCount"]
                pending[job["modelId"]] = pending.get(job["modelId"], 0) + left
        data = []
        for model in sorted(set(pending) | set(self._tokens_unpublished)):
            tokens = self._tokens_unpublished.pop(model, [0, 0])
            for name, value in (
                ("NumberOfRecordsPendingProcessing", pending.get(model, 0)),
                ("NumberOfInputTokensProcessedPerMinute", tokens[0] / minutes),
                ("NumberOfOutputTokensProcessedPerMinute", tokens[1] / minutes),
            ):
                dimensions = [{"Name": "ModelId", "Value": model}]
                data.append({"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": "Count"})
        for start in range(0, len(data), 1000):  # PutMetricData takes at most 1,000 values
            self.cloudwatch.put_metric_data(Namespace=BATCH_METRICS, MetricData=data[start : start + 1000])

    def _count_tokens(self, job: dict, input_tokens: int, output_tokens: int) -> None:
        tokens = self._tokens_unpublished.setdefault(job["modelId"], [0, 0])
        tokens[0] += input_tokens
        tokens[1] += output_tokens

    # ---- helpers: requests --------------------------------------------------------------------

    def _tick(self, operation: str) -> None:
        self._operations[operation] = self._operations.get(operation, 0) + 1
        if self.faults.outage_seconds:
            self.faults.unavailable_until, self.faults.outage_seconds = self.clock() + self.faults.outage_seconds, 0.0
        if self.clock() < self.faults.unavailable_until:
            raise EmulatorError("ServiceUnavailableException", "Service is unavailable (emulated outage).", 503)
        self._calls += 1
        every = self.faults.throttle_every
        if every and self._calls % every == 0:
            raise EmulatorError("ThrottlingException", "Rate exceeded (emulated throttling).", 429)

    def _list_input_files(self, uri: str) -> builtins.list[str]:
        """Return the input object keys: the object itself, or every *.jsonl under the prefix."""
        bucket, key = split_s3_uri(uri)
        s3 = self._require_s3()
        try:
            if key and not key.endswith("/"):
                try:
                    s3.head_object(Bucket=bucket, Key=key)
                    return [key]
                except s3.exceptions.ClientError as exc:
                    if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                        raise
                prefix = key + "/"
            else:
                prefix = key
            keys = [
                obj["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for obj in page.get("Contents", [])
                if obj["Key"].endswith(".jsonl")
            ]
        except s3.exceptions.ClientError as exc:
            raise validation_error(
                f"inputDataConfig: cannot access input location {uri}: {exc.response['Error'].get('Code')}"
            ) from None
        if not keys:
            raise validation_error(f"inputDataConfig: no input object or .jsonl files found at {uri}")
        return sorted(keys)

    def _require_s3(self) -> Any:
        if self.s3 is None:
            raise EmulatorError("InternalServerException", "Emulator has no S3 client configured.", 500)
        return self.s3

    def _find(self, identifier: str) -> dict:
        job_id = identifier.rsplit("/", 1)[-1]
        job = self._jobs.get(job_id)
        if job is None or (identifier.startswith("arn:") and identifier != job["jobArn"]):
            raise EmulatorError(
                "ResourceNotFoundException", f"Could not find model invocation job '{identifier}'.", 404
            )
        return job

    @staticmethod
    def _view(job: dict) -> dict:
        view = {
            k: job[k]
            for k in (
                "jobArn",
                "jobName",
                "modelId",
                "clientRequestToken",
                "roleArn",
                "status",
                "message",
                "inputDataConfig",
                "outputDataConfig",
                "vpcConfig",
                "timeoutDurationInHours",
                "modelInvocationType",
                "totalRecordCount",
                "processedRecordCount",
                "successRecordCount",
                "errorRecordCount",
            )
        }
        for k in ("submitTime", "lastModifiedTime", "endTime", "jobExpirationTime"):
            view[k] = iso(job[k])
        return {k: v for k, v in view.items() if v is not None}

    def _save(self) -> None:
        if not self.state_file:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".jobs-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": 1, "jobs": self._jobs}, fh)
        os.replace(tmp, self.state_file)

    # ---- state machine ----------------------------------------------------------------------

    def _advance_all(self) -> bool:
        changed = False
        for job in list(self._jobs.values()):
            changed |= self._advance(job)
        return changed

    def _phase_seconds(self, job: dict) -> float:
        """How long the job's current phase lasts (inf: the faults hold it there until it is stopped)."""
        status, name = job["status"], job["jobName"]
        if status == JobStatus.SCHEDULED.value and self.faults.matches("hold_jobs_matching", name):
            return float("inf")
        if status == JobStatus.IN_PROGRESS.value:
            if self.faults.matches("stall_jobs_matching", name):
                return float("inf")
            if self.faults.matches("slow_jobs_matching", name):
                return job["timeScale"] * self.faults.slow_factor
        return job["timeScale"]

    def _progress(self, job: dict, now: float) -> None:
        """An InProgress job's processed count: the share of its phase gone by (none while it stalls)."""
        if job["status"] != JobStatus.IN_PROGRESS.value:
            return
        seconds = self._phase_seconds(job)
        if seconds == float("inf") or seconds <= 0:
            return
        share = min(max((now - job["phaseStart"]) / seconds, 0.0), 1.0)
        job["processedRecordCount"] = max(job["processedRecordCount"], int(job["totalRecordCount"] * share))

    def _advance(self, job: dict) -> bool:
        """Move the job through every phase whose deadline has passed; True if it changed."""
        now = self.clock()
        changed = False
        while job["status"] not in TERMINAL_STATUSES:
            due = job["phaseStart"] + self._phase_seconds(job)
            if now < due:
                before = job["processedRecordCount"]
                self._progress(job, now)
                changed |= job["processedRecordCount"] != before
                break
            status, message = self._next_status(job)
            job.update(status=status, phaseStart=due, lastModifiedTime=due)
            if message is not None:
                job["message"] = message
            if status in TERMINAL_STATUSES:
                job["endTime"] = due
            changed = True
        return changed

    def _next_status(self, job: dict) -> tuple[str, str | None]:
        status = job["status"]
        try:
            if status == JobStatus.SUBMITTED.value:
                return JobStatus.VALIDATING.value, None
            if status == JobStatus.VALIDATING.value:
                self._validate_inputs(job)
                return JobStatus.SCHEDULED.value, None
            if status == JobStatus.SCHEDULED.value:
                pattern = self.faults.expire_jobs_matching
                if pattern and pattern in job["jobName"]:
                    return (
                        JobStatus.EXPIRED.value,
                        "The job expired before it could start (emulated fault: expire_jobs_matching).",
                    )
                return JobStatus.IN_PROGRESS.value, None
            if status == JobStatus.IN_PROGRESS.value:
                pattern = self.faults.fail_jobs_matching
                if pattern and pattern in job["jobName"]:
                    raise JobFailure("Internal error while processing the job (emulated fault: fail_jobs_matching).")
                partial = self._process(job)
                return (JobStatus.PARTIALLY_COMPLETED.value if partial else JobStatus.COMPLETED.value), None
            if status == JobStatus.STOPPING.value:
                if job.get("stoppedFrom") == JobStatus.IN_PROGRESS.value:
                    try:
                        self._process(job, salvage=True)
                    except Exception as exc:  # the job is stopped all the same
                        return JobStatus.STOPPED.value, f"Stop requested by user. No partial output: {exc}"
                return JobStatus.STOPPED.value, None
        except JobFailure as exc:
            return JobStatus.FAILED.value, str(exc)
        except Exception as exc:  # S3 trouble etc.: the real service fails the job too
            return JobStatus.FAILED.value, f"Internal error while processing the job: {type(exc).__name__}: {exc}"
        raise AssertionError(f"unexpected status {status}")

    def _input_location(self, job: dict) -> tuple[str, builtins.list[str]]:
        bucket, _ = split_s3_uri(job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
        return bucket, job["inputFiles"]

    def _iter_lines(self, bucket: str, key: str) -> Iterator[bytes]:
        """The object's non-blank lines (split as bytes.splitlines does), read in blocks."""
        body = self._require_s3().get_object(Bucket=bucket, Key=key)["Body"]
        pending = b""
        while block := body.read(READ_BYTES):
            lines = (pending + block).splitlines()
            pending = b"" if block.endswith((b"\n", b"\r")) else lines.pop()
            yield from filter(bytes.strip, lines)
        if pending.strip():
            yield pending

    def _validate_inputs(self, job: dict) -> None:
        """Check the input files as the service does at the Validating step (raises JobFailure)."""
        s3 = self._require_s3()
        bucket, keys = self._input_location(job)
        total_records = total_bytes = 0
        for key in keys:
            uri = f"s3://{bucket}/{key}"
            try:
                size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
            except s3.exceptions.ClientError:
                raise JobFailure(f"Input file {uri} could not be read.") from None
            if size > MAX_FILE_BYTES:
                raise JobFailure(f"Input file {uri} is {size} bytes, exceeding the 1 GB per-file limit.")
            total_bytes += size
            if total_bytes > MAX_JOB_BYTES:
                raise JobFailure("The total size of the input files exceeds the 5 GB per-job limit.")
            count = 0
            lines = self._iter_lines(bucket, key)
            while chunk := list(itertools.islice(lines, min(CHUNK_RECORDS, MAX_RECORDS_PER_FILE + 1 - count))):
                shaped = _bulk_lines(job, chunk)  # valid records; the others are parsed
                for offset in np.flatnonzero(~shaped).tolist():
                    _check_record(chunk[offset], count + offset + 1, uri)
                count += len(chunk)
                if count > MAX_RECORDS_PER_FILE:
                    raise JobFailure(
                        f"Input file {uri} has more than {MAX_RECORDS_PER_FILE} records, the per-file limit."
                    )
            total_records += count
            if total_records > MAX_RECORDS_PER_JOB:
                raise JobFailure(f"The job has more than {MAX_RECORDS_PER_JOB} records, the per-job limit.")
        min_records = self.faults.min_records
        if total_records < min_records:
            raise JobFailure(
                f"The number of records in the job's input ({total_records}) is less than the minimum "
                f"of {min_records} records required for a batch inference job."
            )
        job["totalRecordCount"] = total_records

    def _output_prefix(self, job: dict) -> tuple[str, str]:
        bucket, prefix = split_s3_uri(job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
        prefix = prefix.strip("/")
        return bucket, (prefix + "/" if prefix else "") + job["jobId"] + "/"

    def _process(self, job: dict, salvage: bool = False) -> bool:
        """Run the job: write one shuffled .out per input file plus manifest.json.out.

        With ``salvage`` (a job stopped while InProgress) only the records processed before the stop
        are written: the share of each file's shuffled order that processedRecordCount had reached at
        the stop (never the whole file), so it stays below totalRecordCount. Returns True when
        any record errored or was dropped (PartiallyCompleted).
        """
        s3 = self._require_s3()
        in_bucket, keys = self._input_location(job)
        out_bucket, out_prefix = self._output_prefix(job)
        totals = dict(total=0, processed=0, success=0, error=0, input_tokens=0, output_tokens=0)
        for key in keys:
            raw = list(self._iter_lines(in_bucket, key))
            order = np.random.default_rng(_seed(job["jobId"], key)).permutation(len(raw))
            if salvage:
                share = job["processedRecordCount"] / max(job["totalRecordCount"], 1)
                order = order[: min(int(len(raw) * share), max(len(raw) - 1, 0))]
            with tempfile.TemporaryFile() as out:
                for start in range(0, len(order), CHUNK_RECORDS):
                    positions = order[start : start + CHUNK_RECORDS]
                    out.write(answer_chunk(job, key, [raw[i] for i in positions], positions, self.faults, totals))
                size = out.tell()
                out.seek(0)
                out_key = out_prefix + PurePosixPath(key).name + ".out"
                if size < 5 * 1024**3:  # a single PUT is much faster than multipart against moto
                    s3.put_object(Bucket=out_bucket, Key=out_key, Body=out, ContentLength=size)
                else:
                    s3.upload_fileobj(out, out_bucket, out_key)
            totals["total"] += len(raw)
            del raw
        manifest = {
            "totalRecordCount": totals["total"],
            "processedRecordCount": totals["processed"],
            "successRecordCount": totals["success"],
            "errorRecordCount": totals["error"],
            "inputTokenCount": totals["input_tokens"],
            "outputTokenCount": totals["output_tokens"],
        }
        s3.put_object(Bucket=out_bucket, Key=out_prefix + "manifest.json.out", Body=json.dumps(manifest).encode())
        self._count_tokens(job, totals["input_tokens"], totals["output_tokens"])
        job.update(
            {
                k: manifest[k]
                for k in ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
            }
        )
        return totals["error"] > 0 or totals["processed"] < totals["total"]


def _check_record(line: bytes, lineno: int, uri: str) -> None:
    """Raise JobFailure unless the line is a JSON object with a modelInput."""
    try:
        record = json.loads(line)
    except ValueError:
        raise JobFailure(f"Line {lineno} of {uri} is not valid JSON.") from None
    if not isinstance(record, dict) or "modelInput" not in record:
        raise JobFailure(f"Line {lineno} of {uri} is missing the required 'modelInput' field.")


def _split_records(lines: list[bytes]) -> tuple[pa.Array, np.ndarray, pa.Array, pa.Array]:
    """(the lines as text, indices of the records in compact form, their recordIds, their modelInput texts)."""
    texts = pa.array([], pa.string())
    if sum(map(len, lines)) <= BULK_BYTES:
        try:
            texts = pa.array(lines, pa.string())
        except pa.ArrowInvalid:  # not UTF-8
            pass
    starts = pc.and_(pc.match_substring_regex(texts, RECORD_START), pc.ends_with(texts, "}"))
    rows = np.flatnonzero(starts.to_numpy(zero_copy_only=False))
    halves = pc.split_pattern(texts.take(rows), '","modelInput":', max_splits=1)
    ids = pc.utf8_slice_codeunits(pc.list_element(halves, 0), len('{"recordId":"'))
    return texts, rows, ids, pc.utf8_slice_codeunits(pc.list_element(halves, 1), 0, -1)


def _bulk_lines(job: dict, lines: list[bytes]) -> np.ndarray:
    """Which lines are records whose modelInput is in a bulk shape (so valid JSON)."""
    _, rows, _, bodies = _split_records(lines)
    shaped = np.zeros(len(lines), bool)
    shaped[rows] = in_bulk_shape(job["modelId"], job["modelInvocationType"], bodies)
    return shaped


def answer_chunk(
    job: dict, key: str, lines: list[bytes], positions: np.ndarray, faults: FaultConfig, totals: dict, bulk: bool = True
) -> bytes | memoryview:
    """The output lines for input ``lines`` (``positions``: their indices in the file, for made-up recordIds).

    With ``bulk``, the records in compact form whose modelInput is in a bulk shape are answered
    column-wise (``synthesize_bulk``) and the others one by one; without, all one by one (the
    reference). Adds the record and token counts to ``totals``.
    """
    texts, rows, ids, bodies = _split_records(lines if bulk else [])
    answers = synthesize_bulk(job["modelId"], job["modelInvocationType"], bodies)
    bulk_rows = rows[answers.rows]
    record_ids: list[str | None] = [None] * len(lines)
    for row, record_id in zip(bulk_rows.tolist(), ids.take(answers.rows).to_pylist()):
        record_ids[row] = record_id
    model_inputs: dict[int, Any] = {}
    for row in sorted(set(range(len(lines))) - set(bulk_rows.tolist())):
        record = json.loads(lines[row])
        record_id = record.get("recordId")
        if not isinstance(record_id, str) or not record_id:
            record_id = f"R{_seed(key, str(int(positions[row]))) % 10**11:011d}"
        record_ids[row], model_inputs[row] = record_id, record["modelInput"]
    dropped, injected = _draw_faults(job["jobName"], record_ids, faults)
    totals["processed"] += len(lines) - len(dropped)
    written = _single_lines(job, lines, record_ids, model_inputs, dropped, injected, totals)
    if not len(bulk_rows):
        return "".join(written.values()).encode()
    answered = ~np.isin(bulk_rows, [*dropped, *injected])
    outputs = answers.outputs.filter(pa.array(answered))
    ok = pc.is_valid(outputs).to_numpy(zero_copy_only=False)
    totals["success"] += int(ok.sum())
    totals["error"] += len(ok) - int(ok.sum())
    totals["input_tokens"] += int(answers.input_tokens[answered][ok].sum())
    totals["output_tokens"] += int(answers.output_tokens[answered][ok].sum())
    heads = pc.utf8_slice_codeunits(texts.take(bulk_rows[answered]), 0, -1)
    out = pc.binary_join_element_wise(heads, ',"modelOutput":', outputs, "}\n", "")
    if out.null_count:  # INPUT_TOO_LONG
        out = pc.coalesce(out, pc.binary_join_element_wise(heads, f",{_error(400, INPUT_TOO_LONG)}}}\n", ""))
    out_rows = np.concatenate([bulk_rows[answered], np.fromiter(written, np.intp, len(written))])
    if written or (np.diff(out_rows) < 0).any():
        singly = pa.array([line.encode() for line in written.values()], pa.binary())
        out = pa.concat_arrays([out.cast(pa.binary()), singly]).take(pa.array(np.argsort(out_rows)))
    return _concatenated(out)


def _draw_faults(name: str, record_ids: list, faults: FaultConfig) -> tuple[set[int], dict[int, tuple[int, str]]]:
    """(the records dropped, the error lines injected for others): drawn per (job, record), so a retry
    job draws afresh."""
    dropped: set[int] = set()
    injected: dict[int, tuple[int, str]] = {}
    for row, record_id in enumerate(record_ids):
        if faults.drop_rate and _unit_hash("drop", name, record_id) < faults.drop_rate:
            dropped.add(row)
        elif faults.record_error_rate and _unit_hash("error", name, record_id) < faults.record_error_rate:
            injected[row] = (
                (429, "[emulated] ThrottlingException: Too many tokens, please wait before trying again.")
                if _unit_hash("code", name, record_id) < 0.5
                else (500, "[emulated] InternalServerException: The model encountered an unexpected error.")
            )
    return dropped, injected


def _single_lines(
    job: dict,
    lines: list[bytes],
    record_ids: list,
    model_inputs: dict[int, Any],
    dropped: set[int],
    injected: dict[int, tuple[int, str]],
    totals: dict,
) -> dict[int, str]:
    """The output line of each record answered one by one (``model_inputs``) or given an injected error,
    by row; adds their counts to ``totals``."""
    singles = [row for row in model_inputs if row not in dropped and row not in injected]
    inputs = [model_inputs[row] for row in singles]
    results = dict(zip(singles, synthesize_batch(job["modelId"], job["modelInvocationType"], inputs)))
    written: dict[int, str] = {}
    for row in sorted(results.keys() | injected.keys()):
        if row in model_inputs:
            model_input = json.dumps(model_inputs[row], separators=(",", ":"), ensure_ascii=False)
            head = f'{{"recordId":{json.dumps(record_ids[row])},"modelInput":{model_input},'
        else:  # a bulk record's line is already its compact JSON
            head = lines[row][:-1].decode() + ","
        res = results.get(row)
        if res is not None and res.error is None:
            written[row] = f'{head}"modelOutput":{res.output_json}}}\n'
            totals["success"] += 1
            totals["input_tokens"] += res.input_tokens
            totals["output_tokens"] += res.output_tokens
        else:
            code, msg = injected.get(row) or (400, (res.error if res is not None else None) or "no answer")
            written[row] = f"{head}{_error(code, msg)}}}\n"
            totals["error"] += 1
    return written


def _error(code: int, message: str) -> str:
    return f'"error":{json.dumps({"errorCode": code, "errorMessage": message})}'


def _concatenated(values: pa.Array) -> bytes | memoryview:
    """The values of a string or binary array without nulls, one after another."""
    if not len(values):
        return b""
    offsets = np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4)
    return memoryview(values.buffers()[2])[offsets[0] : offsets[-1]]


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")
