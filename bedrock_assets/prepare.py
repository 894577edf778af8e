"""raw_dataset's work: stream the source, prepare records, plan shards, write one part per shard."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bedrock_assets.layout import PipelineLayout, shard_key
from bedrock_assets.records import REQUEST, RECORD_ID, RecordIdIndex, line_buffers, prepare_batch, request_lines
from bedrock_assets.sharding import Shard, ShardPlanner, balanced_target
from bedrock_assets.sources import SourceError, iter_batches, read_columns, resolve_files
from bedrock_assets.spec import PipelineSpec, check_columns
from bedrock_assets.storage import download_file, get_json, put_json, upload_file

BATCH_ROWS = 16_384


@dataclass(frozen=True)
class ShardInfo:
    key: str
    rows: int  # input rows, including rows rejected before submission
    records: int  # rows with a Bedrock request
    bytes: int  # size of the JSONL input file
    digest: str  # sha256 of the JSONL input: names the job, so changed input means a new job
    first_position: int


@dataclass
class PreparedDataset:
    files: list[str]
    rows: int
    rejected: int
    shards: list[ShardInfo]


def _total_rows(files: list, s3: Any) -> int | None:
    """Row count from Parquet footers (cheap); unknown for CSV/JSONL."""
    if any(f.format != "parquet" for f in files) or any(f.uri.startswith("s3://") for f in files):
        return None
    return sum(pq.ParquetFile(f.uri).metadata.num_rows for f in files)


def shard_digest(table) -> str:
    """sha256 of the shard's JSONL input file (as ``write_shard_input`` writes it)."""
    digest = hashlib.sha256()
    for piece in line_buffers(table.column(REQUEST)):
        digest.update(piece)
    return digest.hexdigest()


def prepare_dataset(spec: PipelineSpec, s3: Any, overrides: dict | None = None, log=None) -> PreparedDataset:
    """Read the whole source once, in batches, and write the shard parts and the shard index."""
    adapter = spec.adapter()
    files = resolve_files(spec.source.uri, spec.source.format, s3)
    check_columns(spec, read_columns(files[0], s3), files[0].uri)
    quotas = spec.quotas(overrides)
    planner = ShardPlanner(quotas, balanced_target(_total_rows(files, s3), quotas))
    layout = PipelineLayout.for_uri(spec.output_uri)
    ids = RecordIdIndex()
    shards: list[ShardInfo] = []
    position = rejected = 0

    with tempfile.TemporaryDirectory(prefix="bedrock-assets-prep-") as tmp:

        def write(shard: Shard) -> None:
            key = shard_key(len(shards))
            path = Path(tmp) / f"{key}.parquet"
            # request lines are not stored: jsonl_shards renders them again (cheaply) from the rows
            pq.write_table(shard.table.drop_columns([REQUEST]), path, row_group_size=BATCH_ROWS)
            upload_file(s3, path, layout.shard_rows(key))
            path.unlink()
            first = int(shard.table.column("source_row")[0].as_py()) if shard.table.num_rows else 0
            shards.append(ShardInfo(key, shard.table.num_rows, shard.records, shard.bytes,
                                    shard_digest(shard.table), first))
            if log:
                log(f"shard {key}: {shard.records} records, {shard.bytes} bytes")

        for sb in iter_batches(files, s3, BATCH_ROWS):
            prepared = prepare_batch(sb, position, adapter, spec.source.id_column)
            if spec.source.id_column:  # derived ids are unique by construction
                ids.add(prepared.table.column(RECORD_ID).combine_chunks())
            rejected += int((prepared.weights == 0).sum())
            position += sb.batch.num_rows
            for shard in planner.add(prepared.table, prepared.weights, prepared.line_bytes):
                write(shard)
        for shard in planner.finish():
            write(shard)

    duplicates = ids.duplicate_positions()
    if duplicates.size:
        raise SourceError(
            f"source {spec.source.uri}: id column {spec.source.id_column!r} is not unique: "
            f"{duplicates.size} row(s) repeat an earlier id (first at dataset row {int(duplicates[0])})"
        )
    prepared_ds = PreparedDataset([f.uri for f in files], position, rejected, shards)
    put_json(s3, layout.shard_index, asdict(prepared_ds))
    return prepared_ds


def load_shard_index(spec: PipelineSpec, s3: Any) -> PreparedDataset:
    data = get_json(s3, PipelineLayout.for_uri(spec.output_uri).shard_index)
    return PreparedDataset(data["files"], data["rows"], data["rejected"], [ShardInfo(**s) for s in data["shards"]])


def write_shard_input(spec: PipelineSpec, s3: Any, info: ShardInfo) -> dict[str, Any]:
    """Write the shard's Bedrock JSONL input from its rows; verify it matches the plan."""
    layout = PipelineLayout.for_uri(spec.output_uri)
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-shard-") as tmp:
        rows_path = download_file(s3, layout.shard_rows(info.key), Path(tmp) / "rows.parquet")
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
    return {"records": records, "bytes": size, "uri": layout.shard_input(info.key).uri}
