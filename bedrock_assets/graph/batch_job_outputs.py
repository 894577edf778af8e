"""batch_job_outputs: a finished job's ``.jsonl.out`` lines and manifest, normalized into rows.

The job's output files are streamed through ``output_lines.OutputParser`` into
``outputs/<shard>.parquet``; its tokens go to the ledger (the bill), and a job that ended without
output (Failed, Expired, Stopped, refused) fails the ``job_succeeded`` check with its own message.
"""

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.budget import Budget
from bedrock_assets.bedrock.costs import actual_cost
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.prices import usd
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.deadline import stopped_at_cutoff
from bedrock_assets.errors import final_unless_transient
from bedrock_assets.ledger import JobAttempt, JobLedger, JobLedgerResource
from bedrock_assets.metadata import table
from bedrock_assets.output_lines import OutputParser, OutputStats
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.record_cache import RecordCache, Segment
from bedrock_assets.records import CACHE_KEY, CACHED_FROM, INPUT_ERROR, RECORD_ID
from bedrock_assets.storage import (
    Stored,
    iter_line_chunks,
    list_objects,
    local_copy,
    read_bytes,
    upload_file,
    uploaded_behind,
)
from bedrock_assets.uris import S3Location

JOB_CHECK = "job_succeeded"
TRUNCATION_CHECK = "answers_complete"


def build(p: Pipeline) -> dg.AssetsDefinition:
    @p.shard_asset(
        p.keys.batch_job_outputs,
        p.keys.batch_jobs,
        kinds={"bedrock", "s3"},
        check_specs=[
            dg.AssetCheckSpec(
                JOB_CHECK,
                asset=p.keys.batch_job_outputs,
                description="every job finished with output (Completed or PartiallyCompleted), not Failed, "
                "Expired, Stopped or refused; a failed job's message is here",
            ),
            dg.AssetCheckSpec(
                TRUNCATION_CHECK,
                asset=p.keys.batch_job_outputs,
                description="at most max_truncated_rate of a shard's answers were cut off at max_tokens (warns)",
            ),
        ],
        description="The job's .jsonl.out lines and manifest.json.out, normalized into rows "
        "(output or error_code/error_message, token counts).",
    )
    @final_unless_transient
    def batch_job_outputs(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.MaterializeResult:
        return materialize(context, p.step(s3, bedrock), bedrock_ledger.get_ledger())

    return batch_job_outputs


def materialize(context: dg.AssetExecutionContext, step: Step, ledger: JobLedger) -> dg.MaterializeResult:
    """Read the output of every shard's finished job; record its tokens and cost."""
    results = []
    for attempt, outputs in collect_each(step, finished_attempts(ledger, step.name, context.partition_keys)):
        shard = attempt.shard
        attempt = ledger.update(attempt, input_tokens=outputs.input_tokens, output_tokens=outputs.output_tokens)
        cost = actual_cost(attempt, step.price)
        context.add_asset_metadata(
            {**outputs.metadata(), "cost_usd": round(cost, 10) if cost is not None else "cost unknown"},
            partition_key=shard,
        )
        if not attempt.status.has_output and not stopped_at_cutoff(attempt):
            context.log.warning(f"{shard}: batch job {attempt.status.value}: {attempt.message or 'no message'}")
        for warning in outputs.oddities.warnings():
            context.log.warning(f"{shard}: {warning}")
        results.append(outputs)
    if (overrun := budget_overrun(step, ledger)) is not None:
        context.log.warning(overrun)
    return dg.MaterializeResult(
        check_results=[jobs_check(results), truncation_check(results, step.spec.max_truncated_rate)]
    )


def budget_overrun(step: Step, ledger: JobLedger) -> str | None:
    """What the finished jobs cost beyond the pipeline's budget_usd (checked as each job's output is read)."""
    limit = step.spec.budget_usd
    if limit is None:
        return None
    spent = Budget.of(limit, ledger.attempts_of(step.name), step.price).spent
    if spent <= limit:
        return None
    return (
        f"{step.name}: the finished jobs cost {usd(spent)}, over budget_usd {usd(limit)} by {usd(spent - limit)} "
        "(by the tokens Bedrock reports); shards that do not fit what is left wait"
    )


def parse_manifest(data: bytes) -> dict[str, int]:
    manifest = json.loads(data)
    return {k: int(v) for k, v in manifest.items() if isinstance(v, (int, float))}


def finished_attempts(ledger: JobLedger, pipeline: str, shards: Sequence[str]) -> Iterator[JobAttempt]:
    """Each shard's latest attempt, in order (the run's shards read from the ledger in one query); Failure at the
    first whose job has not reached a terminal state (the shards before it are done by then)."""
    latest = ledger.latest_of(pipeline, shards)
    for shard in shards:
        attempt = latest.get(shard)
        if attempt is None or not attempt.status.is_terminal:
            raise dg.Failure(
                f"shard {shard}: job is {attempt.status.value if attempt else 'not submitted'}; outputs are read "
                "once it reaches a terminal state (the completion sensor requests this run)",
                allow_retries=False,
            )
        yield attempt


@dataclass(frozen=True)
class Oddities:
    """Output lines that were not one clean answer per record we sent (see ``output_lines``)."""

    unknown_ids: int = 0
    unreadable_lines: int = 0
    unreadable: tuple[str, ...] = ()  # the first few: file, line number, first bytes
    conflicting_duplicates: int = 0
    conflicting_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, stats: OutputStats) -> "Oddities":
        return cls(
            stats.unknown_ids,
            stats.unreadable_lines,
            tuple(stats.unreadable),
            stats.conflicting_duplicates,
            tuple(stats.conflicting_ids),
        )

    def warnings(self) -> list[str]:
        """One line per kind of oddity found."""
        found = []
        if self.unreadable_lines:
            found.append(
                f"{self.unreadable_lines} output line(s) are not whole JSON records (their records are retried), "
                f"e.g. {self.unreadable[0]}"
            )
        if self.conflicting_duplicates:
            found.append(
                f"{self.conflicting_duplicates} record(s) have repeated output lines that differ; the first line "
                f"of each is kept: {', '.join(self.conflicting_ids)}"
            )
        if self.unknown_ids:
            found.append(f"{self.unknown_ids} output line(s) answer a recordId this shard did not send (ignored)")
        return found

    def metadata(self) -> dict[str, Any]:
        return {
            "unknown_record_ids": self.unknown_ids,
            "unreadable_lines": self.unreadable_lines,
            "conflicting_duplicates": self.conflicting_duplicates,
            **(
                {"oddities": dg.MetadataValue.md("\n".join(f"- {w}" for w in self.warnings()))}
                if self.warnings()
                else {}
            ),
        }


@dataclass(frozen=True)
class JobOutputs:
    """What one finished job returned, as counted while normalizing its output lines."""

    shard: str
    job_arn: str | None
    job_status: JobStatus
    job_message: str | None
    uri: str
    manifest: dict[str, int]
    records_sent: int
    succeeded: int
    errored: int
    duplicate_lines: int
    input_tokens: int
    output_tokens: int
    error_codes: dict[str, int]
    truncated: int = 0  # answers cut off at the token limit (successes among them)
    oddities: Oddities = field(default_factory=Oddities)
    stopped_at_cutoff: bool = False  # the deadline's batch cutoff stopped the job

    @classmethod
    def of(cls, attempt: JobAttempt, uri: str, manifest: dict[str, int], sent: int, stats: OutputStats) -> "JobOutputs":
        return cls(
            shard=attempt.shard,
            job_arn=attempt.job_arn,
            job_status=attempt.status,
            job_message=attempt.message,
            uri=uri,
            manifest=manifest,
            records_sent=sent,
            succeeded=stats.succeeded,
            errored=stats.errored,
            duplicate_lines=stats.duplicates,
            input_tokens=stats.input_tokens,
            output_tokens=stats.output_tokens,
            error_codes=dict(stats.error_codes),
            truncated=stats.truncated,
            oddities=Oddities.of(stats),
            stopped_at_cutoff=stopped_at_cutoff(attempt),
        )

    @property
    def not_returned(self) -> int:
        return self.records_sent - self.succeeded - self.errored

    @property
    def truncated_rate(self) -> float:
        return self.truncated / self.records_sent if self.records_sent else 0.0

    def metadata(self) -> dict[str, Any]:
        return {
            "job_status": self.job_status.value,
            "job_arn": self.job_arn or "",
            **({"job_message": dg.MetadataValue.text(self.job_message)} if self.job_message else {}),
            "records_sent": self.records_sent,
            "succeeded": self.succeeded,
            "errored": self.errored,
            "not_returned": self.not_returned,
            "duplicate_lines": self.duplicate_lines,
            **self.oddities.metadata(),
            "truncated_answers": self.truncated,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error_codes": dg.MetadataValue.json(self.error_codes),
            "manifest": dg.MetadataValue.json(self.manifest),
            "uri": dg.MetadataValue.path(self.uri),
        }


def collect_each(step: Step, attempts: Iterable[JobAttempt]) -> Iterator[tuple[JobAttempt, JobOutputs]]:
    """Each attempt's outputs (``collect_job_outputs``) once stored, in order: a shard's table uploads while the
    next shard's job output is read (``uploaded_behind``)."""
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-out-") as tmp:
        yield from uploaded_behind(
            collect_job_outputs(step, attempt, Path(tmp) / f"{n}.parquet") for n, attempt in enumerate(attempts)
        )


def collect_job_outputs(step: Step, attempt: JobAttempt, out_path: Path) -> Stored[tuple[JobAttempt, JobOutputs]]:
    """Stream the job's ``*.jsonl.out`` files into ``out_path`` and read its manifest; storing it uploads the
    file as ``outputs/<shard>.parquet`` (after the record cache's segment of its answers, if the cache is on)."""
    shard, layout = attempt.shard, step.layout
    with local_copy(step.s3, layout.shard_rows(shard), keep=True) as rows:  # kept for merged_results
        names = pq.read_schema(rows).names
        ids = pq.read_table(rows, columns=[c for c in (RECORD_ID, INPUT_ERROR, CACHE_KEY, CACHED_FROM) if c in names])
    unsent = pc.is_valid(ids.column(INPUT_ERROR))
    if CACHED_FROM in names:  # answered by the record cache: not in the job
        unsent = pc.or_(unsent, pc.is_valid(ids.column(CACHED_FROM)))
    sent = ids.filter(pc.invert(unsent)).column(RECORD_ID)
    parser = OutputParser(step.adapter, expected_ids=sent)
    answered = attempt.status.has_output or attempt.status is JobStatus.STOPPED  # what it answered is paid
    keep = step.spec.cache and CACHE_KEY in names and answered and len(sent) > 0
    segment = Segment(attempt, ids) if keep else None
    manifest = parse_job_output(step, attempt, parser, out_path, segment)

    def store() -> None:
        if segment is not None:
            RecordCache(step).save(segment)  # kept: never paid again
        upload_file(step.s3, out_path, layout.outputs(shard), keep=True)

    outputs = JobOutputs.of(attempt, layout.outputs(shard).uri, manifest, len(sent), parser.stats)
    return Stored((attempt, outputs), store)


def parse_job_output(
    step: Step, attempt: JobAttempt, parser: OutputParser, out_path: Path, segment: Segment | None = None
) -> dict[str, int]:
    """Parse every ``.jsonl.out`` file of the attempt's job into the Parquet file ``out_path`` (and its answers
    into the record cache's ``segment``, if given); its manifest."""
    manifest: dict[str, int] = {}
    with pq.ParquetWriter(out_path, parser.schema) as writer:
        if attempt.job_id:
            prefix = step.layout.job_output(attempt.shard).join(attempt.job_id)
            for loc, _ in list_objects(step.s3, S3Location(prefix.bucket, prefix.key + "/")):
                if loc.key.endswith("manifest.json.out"):
                    manifest = parse_manifest(read_bytes(step.s3, loc))
                elif loc.key.endswith(".out"):
                    for chunk in iter_line_chunks(step.s3, loc):
                        batch = parser.parse_chunk(chunk, where=loc.uri)
                        writer.write_batch(batch)
                        if segment is not None:
                            segment.add(batch)
    if parser.repeats:  # the job returned some records more than once: compare with the rows kept
        parser.note_conflicts(pq.read_table(out_path))
    return manifest


def jobs_check(results: list[JobOutputs]) -> dg.AssetCheckResult:
    """``job_succeeded``: every job of the run finished with output (Completed or PartiallyCompleted)."""
    failed = [r for r in results if not r.job_status.has_output]
    planned = all(r.stopped_at_cutoff for r in failed)  # the deadline's cutoff stopped them: warn, not fail
    rows = [{"shard": r.shard, "status": r.job_status.value, "message": r.job_message or ""} for r in failed]
    described = "; ".join(
        f"{r.shard}: job {r.job_status.value}" + (f" ({r.job_message})" if r.job_message else "") for r in failed[:5]
    )
    return dg.AssetCheckResult(
        check_name=JOB_CHECK,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN if planned else dg.AssetCheckSeverity.ERROR,
        description=None if not failed else described + (f"; and {len(failed) - 5} more" if len(failed) > 5 else ""),
        metadata={"jobs_checked": len(results), "failed_jobs": table(rows, ["shard", "status", "message"])},
    )


def truncation_check(results: list[JobOutputs], max_truncated_rate: float) -> dg.AssetCheckResult:
    """``answers_complete`` (warning): no shard has more answers cut off at max_tokens than the pipeline allows.

    A text answer cut off stays a success (its text is what the model wrote); a structured one is a
    TruncatedStructuredOutput row. Either way the remedy is a larger inference.max_tokens.
    """
    over = [r for r in results if r.truncated_rate > max_truncated_rate]
    rows = [{"shard": r.shard, "truncated": r.truncated, "records_sent": r.records_sent} for r in over]
    return dg.AssetCheckResult(
        check_name=TRUNCATION_CHECK,
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if not over
        else f"{len(over)} shard(s) with more than {max_truncated_rate:.1%} of answers cut off at max_tokens: "
        + ", ".join(f"{r.shard} {r.truncated_rate:.1%}" for r in over[:5])
        + "; raise inference.max_tokens",
        metadata={
            "truncated_answers": sum(r.truncated for r in results),
            "max_truncated_rate": max_truncated_rate,
            "shards_over": table(rows, ["shard", "truncated", "records_sent"]),
        },
    )
