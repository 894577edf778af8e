"""merged_dataset: every merged shard, one at a time, concatenated into one Parquet file."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from bedrock_assets.graph.merged_results import outcome_counts
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.metadata import table
from bedrock_assets.storage import download_file, upload_file

# merged_dataset's record of which job of every shard it was built from
JOBS_DIGEST = "jobs_digest"


def jobs_digest(shards: Sequence[str], latest: Mapping[str, JobAttempt]) -> str:
    """Which job attempt of every shard a merged dataset holds, as one short digest."""
    text = "|".join(f"{k}={latest[k].identity if k in latest else ''}" for k in shards)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MergedDataset:
    rows: int
    succeeded: int
    errors: dict[str, int]
    shards: int
    uri: str

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
            "uri": MetadataValue.path(self.uri),
        }


def merge_dataset(spec: Any, s3: Any, shards: list[str]) -> MergedDataset:
    """Concatenate the merged shards, one at a time, into ``merged_dataset/data.parquet``."""
    layout = PipelineLayout.for_uri(spec.output_uri)
    totals: dict[str, int] = {}
    rows = 0
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-dataset-") as tmp:
        out_path = Path(tmp) / "data.parquet"
        writer: pq.ParquetWriter | None = None
        try:
            for shard in shards:
                part = download_file(s3, layout.merged(shard), Path(tmp) / f"{shard}.parquet")
                table = pq.read_table(part)
                # dictionary columns (shard, job_arn, source_file) differ per part: store as plain text
                table = table.cast(
                    pa.schema(
                        [
                            pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
                            for f in table.schema
                        ]
                    )
                )
                if writer is None:
                    writer = pq.ParquetWriter(out_path, table.schema)
                writer.write_table(table)
                for code, n in outcome_counts(table):
                    totals[code] = totals.get(code, 0) + n
                rows += table.num_rows
                part.unlink()
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            upload_file(s3, out_path, layout.merged_dataset)
    ok = totals.pop("ok", 0)
    return MergedDataset(rows=rows, succeeded=ok, errors=totals, shards=len(shards), uri=layout.merged_dataset.uri)


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
