"""raw_dataset: stream the source, give every row a stable record id and its request, cut quota-compliant shards.

Writes one canonical Parquet part per shard (the shard's input rows) and the shard plan
(``canonical/_shards.json``) that every shard step reads.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from dagster import MetadataValue

from bedrock_assets.chain import ChainView
from bedrock_assets.layout import PipelineLayout, shard_key
from bedrock_assets.metadata import table
from bedrock_assets.records import RECORD_ID, REQUEST, RecordIdIndex, line_buffers, prepare_batch, request_chars
from bedrock_assets.sharding import Shard, ShardPlanner
from bedrock_assets.sources import SourceError, iter_batches, read_columns, resolve_files
from bedrock_assets.spec import PipelineSpec
from bedrock_assets.storage import get_json, put_json, upload_file

BATCH_ROWS = 16_384


@dataclass(frozen=True)
class ShardInfo:
    key: str
    rows: int  # input rows, including rows rejected before submission
    records: int  # rows with a Bedrock request
    bytes: int  # size of the JSONL input file
    digest: str  # sha256 of the JSONL input: names the job, so changed input means a new job
    first_position: int
    input_chars: int = 0  # prompt text sent (for the token estimate)
    on_demand: bool = False  # a retry shard too small for a batch job: sent through the runtime API


@dataclass(frozen=True)
class ShardPlan:
    """The prepared dataset: where it came from and its shards, in order."""

    files: list[str]
    rows: int
    rejected: int
    shards: list[ShardInfo]

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.shards]

    def select(self, keys: list[str]) -> list[ShardInfo]:
        """The named shards; SourceError if the plan no longer has one of them."""
        index = {s.key: s for s in self.shards}
        missing = [k for k in keys if k not in index]
        if missing:
            raise SourceError(f"shard(s) {missing} are not in the current shard plan; re-materialize raw_dataset")
        return [index[k] for k in keys]

    def same_shards(self, other: ShardPlan) -> bool:
        """Both plans cut the same shards with the same inputs."""
        return [(s.key, s.digest) for s in self.shards] == [(s.key, s.digest) for s in other.shards]

    def metadata(self, layout: PipelineLayout) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rejected_rows": self.rejected,
            "shards": len(self.shards),
            "source_files": len(self.files),
            "shard_plan": table(
                [{"shard": s.key, "rows": s.rows, "records": s.records, "bytes": s.bytes} for s in self.shards]
            ),
            "canonical_uri": MetadataValue.path(layout.root.join("canonical").uri),
        }


def shard_digest(rows: pa.Table) -> str:
    """sha256 of the shard's JSONL input file (as jsonl_shards writes it)."""
    digest = hashlib.sha256()
    for piece in line_buffers(rows.column(REQUEST)):
        digest.update(piece)
    return digest.hexdigest()


def prepare_dataset(
    spec: PipelineSpec,
    s3: Any,
    overrides: dict | None = None,
    log: Callable[[str], None] | None = None,
    write_parts: bool = True,
    source_uri: str | None = None,
) -> ShardPlan:
    """Read the whole source once, in batches, and write the shard parts and the shard plan.

    ``write_parts=False`` (``bedrock-assets plan``): the same plan, with nothing written anywhere.
    ``source_uri``: where a chained pipeline's upstream merged dataset is (see ``chain``).
    """
    adapter = spec.adapter()
    view = chain_view(spec)
    uri = source_uri or spec.source.uri
    if uri is None:
        raise SourceError(f"{spec.name}: source.pipeline {spec.source.pipeline!r}: where its merged dataset is")
    files = resolve_files(uri, spec.source.format, s3)
    columns = read_columns(files[0], s3)
    spec.check_columns([view.name(c) for c in view.selected(columns)] if view else columns, files[0].uri)
    quotas = spec.quotas(overrides)
    # shards fill to the quota, so a boundary depends only on the rows before it: appending rows
    # changes the last shard or two, never the ones before (their inputs, and so their jobs, stay)
    planner = ShardPlanner(quotas)
    layout = PipelineLayout.for_uri(spec.output_uri)
    ids = RecordIdIndex()
    shards: list[ShardInfo] = []
    position = rejected = 0

    uploads: list[Future[None]] = []  # a part uploads while the next shard is read and rendered
    with (
        tempfile.TemporaryDirectory(prefix="bedrock-assets-prep-") as tmp,
        ThreadPoolExecutor(1, thread_name_prefix="bedrock-assets-upload") as uploader,
    ):

        def write(shard: Shard) -> None:
            key = shard_key(len(shards))
            if write_parts:
                path = Path(tmp) / f"{key}.parquet"
                # request lines are not stored: jsonl_shards renders them again (cheaply) from the rows
                pq.write_table(shard.table.drop_columns([REQUEST]), path, row_group_size=BATCH_ROWS)
                if uploads:
                    uploads.pop().result()  # one part in flight at most: disk bounded by two parts
                uploads.append(uploader.submit(upload_file, s3, path, layout.shard_rows(key), keep=True))
            first = int(shard.table.column("source_row")[0].as_py()) if shard.table.num_rows else 0
            chars = request_chars(shard.table, adapter)
            shards.append(
                ShardInfo(
                    key, shard.table.num_rows, shard.records, shard.bytes, shard_digest(shard.table), first, chars
                )
            )
            if log:
                log(f"shard {key}: {shard.records} records, {shard.bytes} bytes")

        for sb in iter_batches(files, s3, BATCH_ROWS):
            if view is not None:  # a chain: the upstream rows and columns this pipeline reads, numbered anew
                sb = replace(sb, batch=view.apply(sb.batch), first_row=position)
            prepared = prepare_batch(sb, position, adapter, spec.source.id_column)
            if spec.source.id_column:  # derived ids are unique by construction
                ids.add(prepared.table.column(RECORD_ID).combine_chunks())
            rejected += int((prepared.weights == 0).sum())
            position += sb.batch.num_rows
            for shard in planner.add(prepared.table, prepared.weights, prepared.line_bytes):
                write(shard)
        for shard in planner.finish():
            write(shard)
        for upload in uploads:
            upload.result()  # every part is in S3 before the plan that names it

    duplicates = ids.duplicate_positions()
    if duplicates.size:
        raise SourceError(
            f"source {spec.source.uri}: id column {spec.source.id_column!r} is not unique: "
            f"{duplicates.size} row(s) repeat an earlier id (first at dataset row {int(duplicates[0])})"
        )
    plan = ShardPlan([f.uri for f in files], position, rejected, shards)
    if write_parts:
        put_json(s3, layout.shard_index, asdict(plan))
    return plan


class MissingShardPlan(SourceError):
    """raw_dataset has not written a shard plan under this output_uri yet."""


def load_shard_plan(spec: PipelineSpec, s3: Any) -> ShardPlan:
    """The plan raw_dataset wrote last; MissingShardPlan if it never ran for this output_uri."""
    loc = PipelineLayout.for_uri(spec.output_uri).shard_index
    try:
        data = get_json(s3, loc)
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
        raise MissingShardPlan(f"no shard plan at {loc.uri}: materialize {spec.name}/raw_dataset first") from None
    return ShardPlan(data["files"], data["rows"], data["rejected"], [ShardInfo(**s) for s in data["shards"]])


def chain_view(spec: PipelineSpec) -> ChainView | None:
    """The upstream view of a chained pipeline (None for a pipeline reading a dataset)."""
    source = spec.source
    if source.pipeline is None:
        return None
    return ChainView(source.pipeline, source.succeeded_only, tuple(source.columns) if source.columns else None)


def load_shard_plan_if_any(spec: PipelineSpec, s3: Any) -> ShardPlan | None:
    try:
        return load_shard_plan(spec, s3)
    except MissingShardPlan:
        return None
