"""On-demand inference for a retry remainder too small for a batch job (fewer than the model's minimum).

The shard's request bodies go through the runtime API (InvokeModel, or Converse for the Converse
invocation type) at the on-demand price, with bounded concurrency and backoff on throttling. The
answers are written exactly as a batch job writes its output (``<job output>/<job name>/*.jsonl.out``
lines and ``manifest.json.out``), so batch_job_outputs and merged_results read them unchanged; the
ledger records the attempt as Completed (or PartiallyCompleted) with the job ARN
``on-demand/<job name>``. The attempt is claimed like a batch submission, and finished output found
under the job's prefix is re-attached, so a rerun does not pay again.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import ON_DEMAND_ARN, job_name
from bedrock_assets.bedrock.prices import DEFAULT_TIER
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter
from bedrock_assets.bedrock.submission import (
    Action,
    Decision,
    JobSettings,
    ShardToSubmit,
    SubmitOutcome,
    attempt_record,
    claim,
)
from bedrock_assets.errors import is_transient
from bedrock_assets.ledger import JobAttempt, JobCounts, JobLedger, now_iso
from bedrock_assets.storage import S3Access, list_objects, put_bytes, read_bytes
from bedrock_assets.uris import S3Location, parse_s3_uri

MAX_TRIES = 5  # per record, on top of botocore's own retries


@dataclass(frozen=True)
class Answer:
    """One record's output line, as a batch job would have written it."""

    line: str
    ok: bool


def invoke(client: Any, model_id: str, invocation_type: str, model_input: dict, tier: str = DEFAULT_TIER) -> dict:
    """The model's answer to one request body: InvokeModel's response body, or Converse's response (without the
    service tier it reports). ``tier``: the runtime's service tier (InvokeModel's X-Amzn-Bedrock-Service-Tier
    header, Converse's serviceTier member; https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ServiceTier.html),
    left out for the default one."""
    if invocation_type == "Converse":
        extra: dict[str, Any] = {"serviceTier": {"type": tier}} if tier != DEFAULT_TIER else {}
        response = client.converse(modelId=model_id, **model_input, **extra)
        response.pop("ResponseMetadata", None)
        response.pop("serviceTier", None)  # not part of the answer a batch job writes
        return response
    header: dict[str, Any] = {"serviceTier": tier} if tier != DEFAULT_TIER else {}
    response = client.invoke_model(
        modelId=model_id,
        body=json.dumps(model_input),
        contentType="application/json",
        accept="application/json",
        **header,
    )
    return json.loads(response["body"].read())


def answer(
    call: Callable[[dict], dict], line: bytes, sleep: Callable[[float], None] = time.sleep, base_delay: float = 0.5
) -> Answer:
    """Call the model for one JSONL request line; transient errors are retried with jittered backoff."""
    record = json.loads(line)
    head = {"recordId": record["recordId"], "modelInput": record["modelInput"]}
    for tries in range(1, MAX_TRIES + 1):
        try:
            return Answer(json.dumps({**head, "modelOutput": call(record["modelInput"])}), ok=True)
        except (ClientError, BotoCoreError) as e:  # a connection error past botocore's retries is transient too
            if not is_transient(e) or tries == MAX_TRIES:
                response = getattr(e, "response", {})
                error = response.get("Error", {})
                status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
                message = f"{error.get('Code', type(e).__name__)}: {error.get('Message', str(e))}"
                return Answer(json.dumps({**head, "error": {"errorCode": status, "errorMessage": message}}), ok=False)
            sleep(base_delay * 2 ** (tries - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def run_on_demand(
    bedrock: BedrockBatchResource,
    ledger: JobLedger,
    s3: S3Access,
    settings: JobSettings,
    shard: ShardToSubmit,
    concurrency: int,
    counter: CallCounter | None = None,
) -> SubmitOutcome:
    """Answer every request of the shard through the runtime API, once per shard input."""
    latest = ledger.latest(settings.pipeline, shard.shard)
    if latest is not None and latest.input_digest == shard.digest and latest.job_arn:
        return SubmitOutcome(latest, "already answered on demand; re-attached")
    if latest is None:
        number = 1
    else:
        number = latest.attempt if latest.input_digest == shard.digest else latest.attempt + 1
    name = job_name(settings.prefix, shard.shard, shard.digest, number)
    attempt = attempt_record(ledger, settings, Decision(shard, Action.CREATE, number, name), latest)
    if settings.budget is not None and (held := settings.budget.hold_reason(shard.worst_usd)):
        return SubmitOutcome(ledger.update(attempt, status=JobStatus.QUEUED, queued_at=now_iso(), message=held), held)
    out = parse_s3_uri(shard.output_uri, what="job output").join(name)
    if (found := _finished_counts(s3, out)) is not None:  # answered before the ledger was lost
        return SubmitOutcome(_record(ledger, attempt, name, found), "answers found in S3; re-attached")
    claimed = claim(ledger, attempt)
    if claimed is None:
        return SubmitOutcome(ledger.latest(settings.pipeline, shard.shard) or attempt, "answered by a concurrent run")
    tier = settings.service_tier
    claimed = ledger.update(claimed, started_at=now_iso(), service_tier=tier)  # its rate and its price
    client = bedrock.get_runtime_client()
    lines = [ln for ln in read_bytes(s3, parse_s3_uri(shard.input_uri, what="input")).splitlines() if ln.strip()]

    def call(model_input: dict) -> dict:
        return invoke(client, settings.model_id, settings.invocation_type, model_input, tier)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(lambda ln: answer(call, ln), lines))
    if counter:
        counter.add("InvokeModel" if settings.invocation_type != "Converse" else "Converse", len(lines))
    succeeded = sum(a.ok for a in answers)
    counts = JobCounts(len(lines), len(lines), succeeded, len(lines) - succeeded)
    put_bytes(s3, out.join("input.jsonl.out"), "".join(a.line + "\n" for a in answers).encode())
    manifest = {
        "totalRecordCount": counts.total,
        "processedRecordCount": counts.processed,
        "successRecordCount": counts.succeeded,
        "errorRecordCount": counts.errored,
    }
    put_bytes(s3, out.join("manifest.json.out"), json.dumps(manifest).encode())
    detail = f"{succeeded}/{len(lines)} answered on demand" + (f" ({tier} tier)" if tier != DEFAULT_TIER else "")
    return SubmitOutcome(_record(ledger, claimed, name, counts), detail)


def _record(ledger: JobLedger, attempt: JobAttempt, name: str, counts: JobCounts) -> JobAttempt:
    status = JobStatus.COMPLETED if counts.errored == 0 else JobStatus.PARTIALLY_COMPLETED
    now = now_iso()
    return ledger.update(
        attempt, status=status, job_arn=ON_DEMAND_ARN + name, counts=counts, submitted_at=now, end_time=now
    )


def _finished_counts(s3: S3Access, prefix: S3Location) -> JobCounts | None:
    """The counts of a manifest already written under the prefix, or None."""
    for loc, _ in list_objects(s3, S3Location(prefix.bucket, prefix.key + "/")):
        if loc.key.endswith("manifest.json.out"):
            return JobCounts.from_job(json.loads(read_bytes(s3, loc)))
    return None
