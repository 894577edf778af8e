"""The canary: a few of a pipeline's real records through the runtime API before its first batch job.

Bedrock does not validate ``modelInput`` when a job is created: a wrong body fails record by record after
hours in the queue, and the job still reports Completed. So before the first batch job of a pipeline (of
its current request settings: model, invocation type, prompt, inference settings, output schema) the first
``canary.records`` request lines of the shard about to be submitted are sent through InvokeModel / Converse
with the same bodies, and the answers parsed by the same adapter and output schema as a job's output. A
record that fails for a reason that is not transient (a 4xx, an answer that cannot be read or does not
match the schema) stops the pipeline before any job is created, naming the record, the error and what to
fix. Throttling and 5xx are retried with backoff (the step is retried). The canary is a ledger attempt of
its own (shard ``canary``), so what it cost is billed, in a lane of its own. Its successful answers enter
the record cache (a segment of their own): a later cut of the shards never pays for them again (the first
job, cut before the canary ran, carries them too).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.bedrock.error_classes import TRUNCATED_STRUCTURED
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import CANARY_SHARD, ON_DEMAND_ARN
from bedrock_assets.bedrock.on_demand import answer, invoke
from bedrock_assets.bedrock.resource import CallCounter
from bedrock_assets.ledger import JobAttempt, JobCounts, JobLedger, LedgerConflict, now_iso
from bedrock_assets.output_lines import OutputParser
from bedrock_assets.record_cache import RecordCache, cache_keys
from bedrock_assets.records import CACHE_KEY, RECORD_ID
from bedrock_assets.storage import iter_line_chunks

if TYPE_CHECKING:
    from bedrock_assets.pipeline import Step
    from bedrock_assets.shards import ShardInfo

_TRANSIENT = re.compile(r"^(429|408|5\d\d)$")


def canary_key(step: Step) -> str:
    """What the canary vouches for: the settings every request body is rendered from."""
    return step.spec.settings_digest(frozenset({"model", "prompt", "inference", "output_schema"}))


@dataclass(frozen=True)
class CanaryFailure:
    record_id: str
    code: str
    message: str


def first_lines(step: Step, shard: ShardInfo, n: int) -> list[bytes]:
    """The shard's first ``n`` request lines (its JSONL input, read from the start)."""
    lines: list[bytes] = []
    for chunk in iter_line_chunks(step.s3, step.layout.shard_input(shard.key)):
        lines += [ln for ln in bytes(chunk).splitlines() if ln.strip()][: n - len(lines)]
        if len(lines) >= n:
            break
    return lines


def passed_before(ledger: JobLedger, pipeline: str, key: str) -> JobAttempt | None:
    """The canary attempt that passed for these settings, if any."""
    done = [a for a in ledger.attempts(pipeline, CANARY_SHARD) if a.input_digest == key]
    return next((a for a in reversed(done) if a.status is JobStatus.COMPLETED), None)


def require_canary(
    step: Step, ledger: JobLedger, shard: ShardInfo, tier: str, counter: CallCounter | None = None
) -> JobAttempt | None:
    """Pass the canary for the current settings (once), else raise ``dg.Failure`` naming the record. None when
    the canary is off or passed before; the attempt when it ran now."""
    n, key = step.spec.canary.records, canary_key(step)
    if n == 0 or passed_before(ledger, step.name, key) is not None:
        return None
    previous = ledger.latest(step.name, CANARY_SHARD)
    attempt = _claim(ledger, step, shard, key, (previous.attempt + 1) if previous else 1, tier)
    if attempt is None:
        raise dg.Failure(f"{step.name}: the canary is running in another run; submitting after it", allow_retries=True)
    lines = first_lines(step, shard, n)
    client = step.bedrock.get_runtime_client()
    spec = step.spec
    answers = [
        answer(lambda body: invoke(client, spec.model.id, spec.model.invocation_type, body, tier), ln) for ln in lines
    ]
    if counter:
        counter.add("Converse" if spec.model.invocation_type == "Converse" else "InvokeModel", len(lines))
    parser = OutputParser(step.adapter, expected_ids=[json.loads(ln)["recordId"] for ln in lines])
    parsed = parser.parse_chunk("".join(a.line + "\n" for a in answers).encode(), where="canary")
    failures = _failures(parsed)
    stats = parser.stats
    counts = JobCounts(len(lines), len(lines), stats.succeeded, len(lines) - stats.succeeded)
    attempt = ledger.update(
        attempt, counts=counts, input_tokens=stats.input_tokens, output_tokens=stats.output_tokens, end_time=now_iso()
    )
    if spec.cache:  # real answers: a later cut takes them from the record cache
        _keep(step, attempt, parsed, lines)
    # an answer cut off at max_tokens is the answers_complete check's warning, not a wrong request
    failures = [f for f in failures if f.code != TRUNCATED_STRUCTURED]
    transient = [f for f in failures if _TRANSIENT.match(f.code)]
    if not failures:
        return ledger.update(attempt, status=JobStatus.COMPLETED)
    final = [f for f in failures if f not in transient]
    message = _message(step, final or transient, bool(final))
    ledger.update(attempt, status=JobStatus.FAILED, message=message)
    raise dg.Failure(message, allow_retries=not final)


def _keep(step: Step, attempt: JobAttempt, parsed: pa.RecordBatch, lines: list[bytes]) -> None:
    model = step.spec.model
    requests = pa.array([ln.decode() for ln in lines], pa.string())
    ids = pa.table(
        {
            RECORD_ID: [json.loads(ln)["recordId"] for ln in lines],
            CACHE_KEY: cache_keys(requests, model.id, model.invocation_type),
        }
    )
    RecordCache(step).write_segment(attempt, pa.Table.from_batches([parsed]), ids)


def _claim(ledger: JobLedger, step: Step, shard: ShardInfo, key: str, number: int, tier: str) -> JobAttempt | None:
    name = f"{step.spec.job_prefix}-canary-{key[:10]}-{number}"
    attempt = JobAttempt(
        pipeline=step.name,
        shard=CANARY_SHARD,
        attempt=number,
        job_name=name,
        input_digest=key,
        model_id=step.spec.model.id,
        records=step.spec.canary.records,
        input_uri=step.layout.shard_input(shard.key).uri,
        output_uri="",
        status=JobStatus.SUBMITTING,
        job_arn=ON_DEMAND_ARN + name,
        service_tier=tier,
    )
    try:
        created = ledger.create(attempt)
    except LedgerConflict:
        return None
    return ledger.update(created, started_at=created.created_at, submitted_at=created.created_at)


def _failures(parsed: pa.RecordBatch) -> list[CanaryFailure]:
    """The parsed canary answers that failed (the error columns of a job's normalized output)."""
    failed = parsed.filter(pc.is_valid(parsed.column("error_code")))
    columns = [failed.column(c).to_pylist() for c in (RECORD_ID, "error_code", "error_message")]
    return [CanaryFailure(str(i), str(c), str(m)) for i, c, m in zip(*columns, strict=True)]


def _message(step: Step, failures: list[CanaryFailure], final: bool) -> str:
    first = failures[0]
    more = f" (and {len(failures) - 1} more of the canary's records)" if len(failures) > 1 else ""
    if not final:
        return (
            f"{step.name}: the canary's record {first.record_id} was not answered ({first.code}: "
            f"{first.message.rstrip('.')})"
            f"{more}; no batch job was created yet, and the step is retried"
        )
    return (
        f"{step.name}: the canary's record {first.record_id} failed on demand: {first.code}: "
        f"{first.message.rstrip('.')}{more}. "
        "No batch job was created: a batch job would fail the same way record by record. Fix the request (the "
        "prompt, inference settings, output_schema or model.id) and run again; canary: {records: 0} skips the canary"
    )
