"""merged_results: a left join of a shard's outputs onto its input rows, every input row exactly once.

A shard's materialization carries its merge mark (``progress.MergedMark``: the job attempt it
merged and how many rows could be retried), from which the completion sensor, the retry rounds and
merged_dataset know what is merged.

A shard whose job ended without output (Failed, Expired, Stopped, or never created) is merged too,
every row an error, but not materialized: its mark goes on an observation, and the step fails once
the range is merged. So the shard shows Failed in Dagster's partition views, its run is red in the
Runs page, and the other shards of the range are materialized as usual (``NO_OUTPUT`` names the
failed ones on the failure, for the headless runner).
"""

import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue
from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.error_classes import INVALID_INPUT, NOT_RETURNED, STOPPED_AT_CUTOFF, to_resend
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.deadline import stopped_at_cutoff
from bedrock_assets.errors import final_unless_transient
from bedrock_assets.graph.batch_job_outputs import finished_attempts
from bedrock_assets.ledger import JobAttempt, JobLedger, JobLedgerResource
from bedrock_assets.metadata import table
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.progress import MergedMark
from bedrock_assets.record_cache import RecordCache
from bedrock_assets.records import ANSWERED_BY, CACHED_FROM, INPUT_ERROR, INTERNAL_COLUMNS, MAX_TOKENS, RECORD_ID
from bedrock_assets.shards import round_of
from bedrock_assets.storage import Stored, local_copy, upload_file, uploaded_behind

ROWS_CHECK = "every_input_row_once"
ERROR_RATE_CHECK = "error_rate"
NO_OUTPUT = "bedrock_assets/jobs_without_output"  # on the step's failure: the shards whose job gave no output


def build(p: Pipeline) -> dg.AssetsDefinition:
    @p.shard_asset(
        p.keys.merged_results,
        p.keys.batch_job_outputs,
        kinds={"parquet", "s3"},
        check_specs=[
            dg.AssetCheckSpec(
                ROWS_CHECK,
                asset=p.keys.merged_results,
                blocking=True,
                description="each input row of the shard appears exactly once",
            ),
            dg.AssetCheckSpec(
                ERROR_RATE_CHECK,
                asset=p.keys.merged_results,
                description="no shard has more failed rows than max_error_rate allows",
            ),
        ],
        description="Left join of outputs onto the shard's input rows: every row once, with output or error "
        "(a shard whose job ended without output fails, its rows merged as errors).",
        output_required=False,
    )
    @final_unless_transient
    def merged_results(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> Iterator[Any]:
        yield from materialize(context, p.step(s3, bedrock), bedrock_ledger.get_ledger())

    return merged_results


def materialize(context: dg.AssetExecutionContext, step: Step, ledger: JobLedger) -> Iterator[Any]:
    """Merge every shard of the range; materialize those whose job gave output, observe the others, then fail
    if there were any (see the module's docstring)."""
    merged = []
    for result in merge_each(step, finished_attempts(ledger, step.name, context.partition_keys)):
        merged.append(result)
        event = dg.AssetMaterialization if result.job.status.has_output else dg.AssetObservation
        context.log_event(event(step.keys.merged_results, partition=result.shard, metadata=result.metadata()))
    yield rows_check(merged)
    yield error_rate_check(merged, step.spec.max_error_rate, step.spec.retry.max_rounds)
    failed = [m.job for m in merged if not m.job.status.has_output and not stopped_at_cutoff(m.job)]
    if failed:
        raise dg.Failure(
            "; ".join(
                f"{a.shard}: batch job {a.status.value}" + (f" ({a.message})" if a.message else "") for a in failed
            )
            + ": its rows are merged as errors (the retry rounds send the retriable ones again)",
            metadata={NO_OUTPUT: ",".join(a.shard for a in failed)},
            allow_retries=False,
        )


def merge_shard(rows: pa.Table, outputs: pa.Table, job: JobAttempt) -> pa.Table:
    """Left join outputs onto input rows by record_id: each input row exactly once, in input order.

    Rows without an output line get an error: rejected before submission, not returned by a
    finished job, or the job's own terminal status (Failed / Expired / Stopped) and message.
    """
    index = pc.index_in(rows.column(RECORD_ID), value_set=outputs.column(RECORD_ID))
    joined = outputs.drop_columns([RECORD_ID]).take(index)
    missing = pc.is_null(index)
    input_error = rows.column(INPUT_ERROR)
    rejected = pc.is_valid(input_error)
    if job.status.has_output:
        absent_code = NOT_RETURNED
        absent_msg = f"job finished {job.status.value} without an output line for this record"
    elif stopped_at_cutoff(job):
        absent_code = STOPPED_AT_CUTOFF
        absent_msg = "the deadline's batch cutoff stopped the job before this record: it is answered on demand"
    else:
        absent_code = f"Job{job.status.value}"
        absent_msg = f"batch job {job.status.value}" + (f": {job.message}" if job.message else "")
    code = pc.if_else(rejected, INVALID_INPUT, pc.if_else(missing, absent_code, joined.column("error_code")))
    message = pc.if_else(rejected, input_error, pc.if_else(missing, absent_msg, joined.column("error_message")))
    base = rows.drop_columns([c for c in INTERNAL_COLUMNS if c in rows.column_names])
    n = rows.num_rows
    merged = base.append_column("shard", pa.array([job.shard] * n, pa.string()).dictionary_encode())
    answered = joined.column(ANSWERED_BY) if ANSWERED_BY in joined.column_names else pa.nulls(n, pa.string())
    own = pa.array([job.job_arn] * n, pa.string())
    merged = merged.append_column("job_arn", pc.if_else(pc.is_valid(answered), answered, own).dictionary_encode())
    joined = joined.drop_columns([ANSWERED_BY]) if ANSWERED_BY in joined.column_names else joined
    for name in joined.column_names:
        if name == "error_code":
            merged = merged.append_column(name, code)
        elif name == "error_message":
            merged = merged.append_column(name, message)
        else:
            merged = merged.append_column(name, joined.column(name))
    return merged.append_column(ANSWERED_BY, answered)


def outcome_counts(table: pa.Table) -> Iterator[tuple[str, int]]:
    """(error_code or 'ok', count) pairs of a merged table."""
    counts = pc.value_counts(pc.fill_null(table.column("error_code"), "ok").combine_chunks())
    for item in counts.to_pylist():
        yield item["values"], item["counts"]


def resend_count(merged: pa.Table, rows: pa.Table, resend_truncated: bool) -> int:
    """Rows of a merged shard the next retry round would send again (see ``bedrock.error_classes.to_resend``);
    ``rows``: the shard's input rows, in the merged table's order."""
    raised = rows.column(MAX_TOKENS) if MAX_TOKENS in rows.column_names else None
    codes, messages = merged.column("error_code"), merged.column("error_message")
    return int(pc.sum(to_resend(codes, messages, raised, resend_truncated)).as_py() or 0)


@dataclass(frozen=True)
class MergedShard:
    shard: str
    job: JobAttempt
    input_rows: int
    rows: int
    unique_ids: int
    succeeded: int
    errors: dict[str, int]
    retriable: int
    uri: str

    @property
    def error_rate(self) -> float:
        return (self.rows - self.succeeded) / self.rows if self.rows else 0.0

    def final_error_rate(self, max_rounds: int) -> float:
        """The share of rows that failed and that no later retry round sends again (all failed rows once the
        shard is of the last round)."""
        failed = self.rows - self.succeeded
        # records the deadline's cutoff stopped get one round more, on demand
        last = failed - self.errors.get(STOPPED_AT_CUTOFF, 0)
        final = last if round_of(self.shard) >= max_rounds else failed - self.retriable
        return final / self.rows if self.rows else 0.0

    @property
    def every_row_once(self) -> bool:
        return self.rows == self.input_rows == self.unique_ids

    def metadata(self) -> dict[str, Any]:
        """Per-shard metadata; only a shard that holds every input row once is marked as merged."""
        mark = MergedMark(self.job.identity, self.retriable).metadata()
        return {
            **(mark if self.every_row_once else {MergedMark.RETRIABLE: self.retriable}),
            "job_status": self.job.status.value,
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.rows - self.succeeded,
            "errors": MetadataValue.json(self.errors),
            "uri": MetadataValue.path(self.uri),
        }


def merge_each(step: Step, jobs: Iterable[JobAttempt]) -> Iterator[MergedShard]:
    """Each job's merged shard (``merge_results``) once stored, in order: a shard's merged file uploads while the
    next shard is merged (``uploaded_behind``)."""
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-merge-") as tmp:
        yield from uploaded_behind(merge_results(step, job, Path(tmp) / f"{n}.parquet") for n, job in enumerate(jobs))


def merge_results(step: Step, job: JobAttempt, path: Path) -> Stored[MergedShard]:
    """Every input row of the shard with its output or error, written to ``path``; storing it uploads the file
    as ``merged/<shard>.parquet``."""
    layout, s3 = step.layout, step.s3
    shard = job.shard
    with local_copy(s3, layout.shard_rows(shard)) as rows_path, local_copy(s3, layout.outputs(shard)) as out:
        rows, outputs = pq.read_table(rows_path), pq.read_table(out)
    if CACHED_FROM in rows.column_names and rows.column(CACHED_FROM).null_count < rows.num_rows:
        cached = RecordCache(step).outcomes(rows, outputs.schema)  # the answers the record cache gives
        outputs = pa.concat_tables([outputs, cached], promote_options="permissive")
    merged = merge_shard(rows, outputs, job)
    pq.write_table(merged, path)
    outcome = dict(outcome_counts(merged))
    result = MergedShard(
        shard=shard,
        job=job,
        input_rows=rows.num_rows,
        rows=merged.num_rows,
        unique_ids=pc.count_distinct(merged.column(RECORD_ID)).as_py(),
        succeeded=outcome.pop("ok", 0),
        errors=outcome,
        retriable=resend_count(merged, rows, step.resend_adapter is not None),
        uri=layout.merged(shard).uri,
    )
    return Stored(result, partial(upload_file, s3, path, layout.merged(shard), True))


def rows_check(results: list[MergedShard]) -> AssetCheckResult:
    """``every_input_row_once`` (blocking): each merged shard holds every input row exactly once."""
    bad = [m for m in results if not m.every_row_once]
    return AssetCheckResult(
        check_name=ROWS_CHECK,
        passed=not bad,
        metadata={
            "shards_checked": len(results),
            "mismatches": table(
                [
                    {"shard": m.shard, "input_rows": m.input_rows, "rows": m.rows, "unique_ids": m.unique_ids}
                    for m in bad
                ],
                ["shard", "input_rows", "rows", "unique_ids"],
            ),
        },
    )


def error_rate_check(results: list[MergedShard], max_error_rate: float, max_rounds: int = 0) -> AssetCheckResult:
    """``error_rate`` (warning): no shard has more failed rows than the pipeline allows, counting only the rows
    no later retry round sends again (routine errors the rounds will retry do not warn)."""
    over = [m for m in results if m.final_error_rate(max_rounds) > max_error_rate]
    return AssetCheckResult(
        check_name=ERROR_RATE_CHECK,
        passed=not over,
        severity=AssetCheckSeverity.WARN,
        description=None
        if not over
        else f"{len(over)} shard(s) above max_error_rate {max_error_rate:.1%} with rows no retry round sends again: "
        + ", ".join(f"{m.shard} {m.final_error_rate(max_rounds):.1%}" for m in over[:5]),
        metadata={
            "max_error_rate": max_error_rate,
            "shards_over": table(
                [
                    {
                        "shard": m.shard,
                        "failed": m.rows - m.succeeded,
                        "rows": m.rows,
                        "job_status": m.job.status.value,
                        "errors": json.dumps(m.errors),
                    }
                    for m in over
                ],
                ["shard", "failed", "rows", "job_status", "errors"],
            ),
        },
    )
