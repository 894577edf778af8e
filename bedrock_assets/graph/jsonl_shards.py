"""jsonl_shards: each shard's Bedrock input file (``{"recordId", "modelInput"}`` lines), rendered from its rows."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from dagster import MetadataValue

from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.graph.raw_dataset import BATCH_ROWS, ShardInfo
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.records import RECORD_ID, line_buffers, request_lines
from bedrock_assets.spec import PipelineSpec
from bedrock_assets.storage import local_copy, upload_file


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
    """Write the shard's Bedrock JSONL input from its rows; verify it matches the plan."""
    layout = PipelineLayout.for_uri(spec.output_uri)
    with (
        tempfile.TemporaryDirectory(prefix="bedrock-assets-shard-") as tmp,
        local_copy(s3, layout.shard_rows(info.key)) as rows_path,
    ):
        jsonl_path = Path(tmp) / "input.jsonl"
        digest = hashlib.sha256()
        records = 0
        adapter = spec.adapter()
        columns = [*dict.fromkeys([*adapter.input_columns(), RECORD_ID])]
        with open(jsonl_path, "wb") as out:
            for batch in pq.ParquetFile(rows_path).iter_batches(columns=columns, batch_size=BATCH_ROWS):
                requests, _ = request_lines(batch, batch.column(RECORD_ID), adapter)
                for piece in line_buffers(requests):
                    out.write(piece)
                    digest.update(piece)
                records += len(requests) - requests.null_count
        size = jsonl_path.stat().st_size
        if digest.hexdigest() != info.digest or records != info.records:
            raise RuntimeError(
                f"shard {info.key}: rows in {layout.shard_rows(info.key).uri} no longer match the shard plan "
                "(re-materialize raw_dataset)"
            )
        upload_file(s3, jsonl_path, layout.shard_input(info.key))
    return ShardInput(info.key, records, size, layout.shard_input(info.key).uri)
