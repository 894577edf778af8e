"""jsonl_shards: each shard's Bedrock input file (``{"recordId", "modelInput"}`` lines), rendered from its rows."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from dagster import MetadataValue

from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.graph.raw_dataset import BATCH_ROWS, ShardInfo
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.records import RECORD_ID, line_buffers, request_lines
from bedrock_assets.spec import PipelineSpec
from bedrock_assets.storage import SINGLE_PUT_BYTES, local_copy, upload_fileobj


@dataclass(frozen=True)
class ShardInput:
    shard: str
    records: int
    bytes: int
    uri: str

    def violation(self, quotas: BatchQuotas) -> str | None:
        """Why this input breaks the model's batch quotas, or None."""
        if not quotas.min_records_per_job <= self.records <= quotas.max_records_per_shard:
            return f"{self.records} records, outside {quotas.min_records_per_job}-{quotas.max_records_per_shard}"
        if self.bytes > quotas.max_shard_bytes:
            return f"{self.bytes} bytes, over {quotas.max_shard_bytes}"
        return None

    def metadata(self) -> dict[str, Any]:
        return {"records": self.records, "bytes": self.bytes, "uri": MetadataValue.path(self.uri)}


def write_shard_input(spec: PipelineSpec, s3: Any, info: ShardInfo) -> ShardInput:
    """Write the shard's Bedrock JSONL input from its rows; verify it matches the plan.

    The lines are rendered into memory up to the single-PUT size (a temporary file beyond it).
    """
    layout = PipelineLayout.for_uri(spec.output_uri)
    adapter = spec.adapter()
    columns = [*dict.fromkeys([*adapter.input_columns(), RECORD_ID])]
    digest = hashlib.sha256()
    records = 0
    with (
        local_copy(s3, layout.shard_rows(info.key)) as rows_path,
        tempfile.SpooledTemporaryFile(max_size=SINGLE_PUT_BYTES, prefix="bedrock-assets-shard-") as out,
    ):
        for batch in pq.ParquetFile(rows_path).iter_batches(columns=columns, batch_size=BATCH_ROWS):
            requests, _ = request_lines(batch, batch.column(RECORD_ID), adapter)
            for piece in line_buffers(requests):
                out.write(piece)
                digest.update(piece)
            records += len(requests) - requests.null_count
        size = out.tell()
        if digest.hexdigest() != info.digest or records != info.records:
            raise RuntimeError(
                f"shard {info.key}: rows in {layout.shard_rows(info.key).uri} no longer match the shard plan "
                "(re-materialize raw_dataset)"
            )
        out.seek(0)
        upload_fileobj(s3, out, size, layout.shard_input(info.key))
    return ShardInput(info.key, records, size, layout.shard_input(info.key).uri)
