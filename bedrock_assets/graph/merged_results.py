"""merged_results: a left join of a shard's outputs onto its input rows, every input row exactly once."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from bedrock_assets.bedrock.error_classes import INVALID_INPUT, NOT_RETURNED, retriable_mask
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.metadata import table
from bedrock_assets.records import INPUT_ERROR, INTERNAL_COLUMNS, RECORD_ID
from bedrock_assets.storage import local_copy, upload_file

# Which job attempt a merged shard holds: the merged_results materialization of a shard records it,
# and the completion sensor compares it with the shard's latest attempt to know what is merged.
MERGED_JOB = "merged_job"
# How many of a merged shard's rows carry a retriable error (what the next retry round would send).
RETRIABLE = "retriable"


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
    else:
        absent_code = f"Job{job.status.value}"
        absent_msg = f"batch job {job.status.value}" + (f": {job.message}" if job.message else "")
    code = pc.if_else(rejected, INVALID_INPUT, pc.if_else(missing, absent_code, joined.column("error_code")))
    message = pc.if_else(rejected, input_error, pc.if_else(missing, absent_msg, joined.column("error_message")))
    base = rows.drop_columns([c for c in INTERNAL_COLUMNS if c in rows.column_names])
    n = rows.num_rows
    merged = base.append_column("shard", pa.array([job.shard] * n, pa.string()).dictionary_encode())
    merged = merged.append_column("job_arn", pa.array([job.job_arn] * n, pa.string()).dictionary_encode())
    for name in joined.column_names:
        if name == "error_code":
            merged = merged.append_column(name, code)
        elif name == "error_message":
            merged = merged.append_column(name, message)
        else:
            merged = merged.append_column(name, joined.column(name))
    return merged


def outcome_counts(table: pa.Table) -> Iterator[tuple[str, int]]:
    """(error_code or 'ok', count) pairs of a merged table."""
    counts = pc.value_counts(pc.fill_null(table.column("error_code"), "ok").combine_chunks())
    for item in counts.to_pylist():
        yield item["values"], item["counts"]


def retriable_count(table: pa.Table) -> int:
    """Rows of a merged table whose error is retriable (see ``bedrock.error_classes``)."""
    return int(pc.sum(retriable_mask(table.column("error_code"), table.column("error_message"))).as_py() or 0)


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

    @property
    def every_row_once(self) -> bool:
        return self.rows == self.input_rows == self.unique_ids

    def metadata(self) -> dict[str, Any]:
        """Per-shard metadata; only a shard that holds every input row once is recorded as merged."""
        return {
            **({MERGED_JOB: self.job.identity} if self.every_row_once else {}),
            "job_status": self.job.status.value,
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.rows - self.succeeded,
            RETRIABLE: self.retriable,
            "errors": MetadataValue.json(self.errors),
            "uri": MetadataValue.path(self.uri),
        }


def merge_results(spec: Any, s3: Any, job: JobAttempt) -> MergedShard:
    """Write ``merged/<shard>.parquet``: every input row of the shard with its output or error."""
    layout = PipelineLayout.for_uri(spec.output_uri)
    shard = job.shard
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-merge-") as tmp:
        with local_copy(s3, layout.shard_rows(shard)) as rows_path, local_copy(s3, layout.outputs(shard)) as out:
            rows, outputs = pq.read_table(rows_path), pq.read_table(out)
        merged = merge_shard(rows, outputs, job)
        path = Path(tmp) / "merged.parquet"
        pq.write_table(merged, path)
        upload_file(s3, path, layout.merged(shard), keep=True)
    outcome = dict(outcome_counts(merged))
    return MergedShard(
        shard=shard,
        job=job,
        input_rows=rows.num_rows,
        rows=merged.num_rows,
        unique_ids=pc.count_distinct(merged.column(RECORD_ID)).as_py(),
        succeeded=outcome.pop("ok", 0),
        errors=outcome,
        retriable=retriable_count(merged),
        uri=layout.merged(shard).uri,
    )


def rows_check(results: list[MergedShard]) -> AssetCheckResult:
    """``every_input_row_once`` (blocking): each merged shard holds every input row exactly once."""
    bad = [m for m in results if not m.every_row_once]
    return AssetCheckResult(
        check_name="every_input_row_once",
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


def error_rate_check(results: list[MergedShard], max_error_rate: float) -> AssetCheckResult:
    """``error_rate`` (warning): no shard has more failed rows than the pipeline allows."""
    over = [m for m in results if m.error_rate > max_error_rate]
    return AssetCheckResult(
        check_name="error_rate",
        passed=not over,
        severity=AssetCheckSeverity.WARN,
        description=None
        if not over
        else f"{len(over)} shard(s) above max_error_rate {max_error_rate:.1%}: "
        + ", ".join(f"{m.shard} {m.error_rate:.1%}" for m in over[:5]),
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
