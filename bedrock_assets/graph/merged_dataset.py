"""merged_dataset: every first-pass shard, one at a time, each record with its final outcome after the retry rounds."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from bedrock_assets.graph.merged_results import outcome_counts
from bedrock_assets.graph.retry_rounds import RetryRound
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.metadata import table
from bedrock_assets.records import RECORD_ID
from bedrock_assets.storage import local_copy, upload_file

# merged_dataset's record of which job of every shard it was built from
JOBS_DIGEST = "jobs_digest"
# how many rounds (first pass + retry rounds) sent the record to Bedrock
ATTEMPTS = "attempts"


@dataclass(frozen=True)
class MergedDataset:
    rows: int
    succeeded: int
    errors: dict[str, int]
    shards: int
    uri: str
    retried: int = 0  # records sent again in retry rounds
    retry_rounds: int = 0
    resent_in_batch_jobs: int = 0  # records sent in retry rounds' batch jobs (a record once per round)
    resent_on_demand: int = 0  # records answered through the runtime API

    @property
    def failed(self) -> int:
        return self.rows - self.succeeded

    @property
    def error_rate(self) -> float:
        return self.failed / self.rows if self.rows else 0.0

    def metadata(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": MetadataValue.json(self.errors),
            "shards": self.shards,
            "records_retried": self.retried,
            "retry_rounds": self.retry_rounds,
            "resent_in_batch_jobs": self.resent_in_batch_jobs,
            "resent_on_demand": self.resent_on_demand,
            "uri": MetadataValue.path(self.uri),
        }


def merge_dataset(
    spec: Any, s3: Any, shards: list[str], retry_shards: Sequence[str] = (), rounds: Sequence[RetryRound] = ()
) -> MergedDataset:
    """Write ``merged_dataset/data.parquet``: the first-pass shards in order, one at a time, each record
    with its outcome from the last retry round that holds it, and how many rounds it took (``attempts``)."""
    layout = PipelineLayout.for_uri(spec.output_uri)
    totals: dict[str, int] = {}
    rows = 0
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-dataset-") as tmp:
        retried = _final_retry_outcomes(s3, layout, retry_shards)
        out_path = Path(tmp) / "data.parquet"
        writer: pq.ParquetWriter | None = None
        try:
            for shard in shards:
                with local_copy(s3, layout.merged(shard)) as part:
                    table = with_final_outcomes(_plain(pq.read_table(part)), retried)
                if writer is None:
                    writer = pq.ParquetWriter(out_path, table.schema)
                writer.write_table(table)
                for code, n in outcome_counts(table):
                    totals[code] = totals.get(code, 0) + n
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            upload_file(s3, out_path, layout.merged_dataset)
    ok = totals.pop("ok", 0)
    return MergedDataset(
        rows=rows,
        succeeded=ok,
        errors=totals,
        shards=len(shards),
        uri=layout.merged_dataset.uri,
        retried=0 if retried is None else retried.num_rows,
        retry_rounds=len(rounds),
        resent_in_batch_jobs=sum(r.records for r in rounds if not r.on_demand),
        resent_on_demand=sum(r.records for r in rounds if r.on_demand),
    )


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns (shard, job_arn, source_file) differ per part: plain text in the dataset."""
    return table.cast(
        pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema])
    )


def _final_retry_outcomes(s3: Any, layout: PipelineLayout, retry_shards: Sequence[str]) -> pa.Table | None:
    """Every retried record once, from the merged retry shards (held in memory: the retried rows only,
    the retriable share of the dataset, not the dataset)."""
    if not retry_shards:
        return None
    parts = []
    for key in retry_shards:  # in round order
        with local_copy(s3, layout.merged(key)) as part:
            parts.append(_plain(pq.read_table(part)))
    return final_outcomes(parts)


def final_outcomes(rounds: Sequence[pa.Table]) -> pa.Table:
    """Each record's row from the last of ``rounds`` (merged retry shards, in round order) that holds it,
    with ``attempts``: 1 (the first pass) + the rounds that sent it."""
    retried = pa.concat_tables(rounds, promote_options="permissive")
    retried = retried.append_column("_row", pa.array(np.arange(retried.num_rows), pa.int64()))
    last = retried.group_by(RECORD_ID).aggregate([("_row", "max"), ("_row", "count")])
    final = retried.take(last.column("_row_max")).drop_columns(["_row"])
    return final.append_column(ATTEMPTS, pc.add(pc.cast(last.column("_row_count"), pa.int64()), 1))


def with_final_outcomes(table: pa.Table, retried: pa.Table | None) -> pa.Table:
    """A first-pass shard's rows, each replaced by its final retry outcome where it has one (shard kept)."""
    n = table.num_rows
    if retried is None:
        return table.append_column(ATTEMPTS, pa.array(np.ones(n, np.int64)))
    index = pc.index_in(table.column(RECORD_ID), value_set=retried.column(RECORD_ID))
    replaced = pc.is_valid(index)
    first_pass = table.append_column(ATTEMPTS, pa.array(np.ones(n, np.int64)))
    candidates = pa.concat_tables([first_pass, retried.select(first_pass.column_names).cast(first_pass.schema)])
    positions = pc.if_else(replaced, pc.add(pc.cast(index, pa.int64()), n), pa.array(np.arange(n), pa.int64()))
    final = candidates.take(positions)
    return final.set_column(final.schema.get_field_index("shard"), "shard", table.column("shard"))


def complete_check(
    dataset: MergedDataset,
    raw_rows: int,
    max_error_rate: float,
    latest: Mapping[str, JobAttempt],
    shards: Sequence[str],
) -> AssetCheckResult:
    """``complete``: every input row is in the merged dataset, and at most max_error_rate of them failed."""
    problems = []
    if dataset.rows != raw_rows:
        problems.append(f"{dataset.rows} merged rows for {raw_rows} input rows")
    if dataset.error_rate > max_error_rate:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(dataset.errors.items(), key=lambda kv: -kv[1])[:6])
        problems.append(
            f"{dataset.failed} of {dataset.rows} rows failed ({dataset.error_rate:.1%}, "
            f"max_error_rate {max_error_rate:.1%}): {codes}"
        )
    failed_jobs = [latest[k] for k in shards if k in latest and not latest[k].status.has_output]
    return AssetCheckResult(
        check_name="complete",
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(problems) or None,
        metadata={
            "raw_rows": raw_rows,
            "merged_rows": dataset.rows,
            "failed_rows": dataset.failed,
            "error_rate": round(dataset.error_rate, 6),
            "max_error_rate": max_error_rate,
            "errors": MetadataValue.json(dataset.errors),
            "failed_jobs": table(
                [{"shard": a.shard, "status": a.status.value, "message": a.message or ""} for a in failed_jobs],
                ["shard", "status", "message"],
            ),
        },
    )
