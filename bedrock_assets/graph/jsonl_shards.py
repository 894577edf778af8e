"""jsonl_shards: each shard's Bedrock input file (``{"recordId", "modelInput"}`` lines) where its job reads it.

The lines were rendered once, when the shard was cut (``ShardParts`` stages them as ``canonical/<shard>.jsonl``
with their sha256): a shard's input is a server-side copy of them, after checking that their sha256 is the
shard plan's digest. A shard without such staged lines (cut by an earlier version, or changed since) is
rendered from its rows and checked against the plan the same way.
"""

import hashlib
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.errors import final_unless_transient
from bedrock_assets.metadata import table
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.records import CACHED_FROM, MAX_TOKENS, RECORD_ID, line_buffers, rendered_requests
from bedrock_assets.shards import BATCH_ROWS, LINES_DIGEST, LINES_SETTINGS, ShardInfo, select_shards
from bedrock_assets.storage import (
    COPY_OBJECT_BYTES,
    SINGLE_PUT_BYTES,
    Stored,
    copy_within,
    head,
    local_copy,
    upload_fileobj,
    uploaded_behind,
)

QUOTAS_CHECK = "within_batch_quotas"
COPIES_AT_ONCE = 4  # staged lines being copied at once


def build(p: Pipeline) -> dg.AssetsDefinition:
    @p.shard_asset(
        p.keys.jsonl_shards,
        p.keys.raw_dataset,
        kinds={"jsonl", "s3"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec(
                QUOTAS_CHECK,
                asset=p.keys.jsonl_shards,
                blocking=True,
                description="record count and bytes inside the model's batch quotas",
            )
        ],
        description="Each shard's Bedrock input file ({recordId, modelInput} lines); retry shards hold only "
        "the retriable records of the previous round.",
    )
    @final_unless_transient
    def jsonl_shards(
        context: dg.AssetExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource
    ) -> dg.MaterializeResult:
        return materialize(context, p.step(s3, bedrock))

    return jsonl_shards


def materialize(context: dg.AssetExecutionContext, step: Step) -> dg.MaterializeResult:
    """Write the input file of every shard of the run; the check fails for a shard outside the quotas."""
    violations = []
    for info, written in write_shard_inputs(step, select_shards(step, context.partition_keys)):
        in_job = not info.on_demand and not (info.cached and not info.records)  # else: no batch job, no quota
        if in_job and (why := written.violation(step.quotas)) is not None:
            violations.append({"shard": written.shard, "violation": why})
        context.add_asset_metadata(written.metadata(), partition_key=written.shard)
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name=QUOTAS_CHECK,
                passed=not violations,
                metadata={"shards_checked": len(context.partition_keys), "violations": table(violations)},
            )
        ]
    )


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
        return {"records": self.records, "bytes": self.bytes, "uri": dg.MetadataValue.path(self.uri)}


def write_shard_inputs(step: Step, infos: Sequence[ShardInfo]) -> Iterator[tuple[ShardInfo, ShardInput]]:
    """Each shard's Bedrock JSONL input where its job reads it, in order: its staged lines copied
    (``staged_copies``, a few at once), or else rendered from its rows (``render_shard_input`` then
    ``upload_shard_input``), the next shard's work running while the last one uploads (``uploaded_behind``: at
    most two shards' files exist, each in memory up to the single-PUT size)."""

    def stored() -> Iterator[Stored[tuple[ShardInfo, ShardInput]]]:
        for info, copied in zip(infos, staged_copies(step, infos), strict=True):
            if copied is not None:
                yield Stored((info, copied), lambda: None)
                continue
            written, body = render_shard_input(step, info)
            yield Stored((info, written), partial(upload_shard_input, step, written, body), body.close)

    return uploaded_behind(stored())


def staged_copies(step: Step, infos: Sequence[ShardInfo]) -> Iterator[ShardInput | None]:
    """``copy_staged_input`` of each shard, in order, with up to ``COPIES_AT_ONCE`` of them under way (a copy is
    S3's work: this process only waits for it). Stopped early, the copies under way finish (each of lines that
    match their plan) and no other starts."""
    pending: deque[Future[ShardInput | None]] = deque()
    settings = step.spec.settings_digest()
    with ThreadPoolExecutor(COPIES_AT_ONCE, thread_name_prefix="bedrock-assets-copy") as pool:
        for i in range(len(infos)):
            while len(pending) < COPIES_AT_ONCE and i + len(pending) < len(infos):
                pending.append(pool.submit(copy_staged_input, step, infos[i + len(pending)], settings))
            yield pending.popleft().result()


def copy_staged_input(step: Step, info: ShardInfo, settings: str) -> ShardInput | None:
    """The shard's staged lines copied where its job reads them (S3 copies them: nothing passes through this
    process), if their sha256 and size are the plan's and they were rendered from the pipeline's current
    settings (``settings``: ``spec.settings_digest()``); else None (the caller renders the input from the rows, which fails if the plan no longer holds).
    The copy is of the version that was checked: S3 refuses it if the lines changed since."""
    layout = step.layout
    staged, target = layout.shard_lines(info.key), layout.shard_input(info.key)
    found = head(step.s3, staged) if info.bytes <= COPY_OBJECT_BYTES else None
    if found is None or found.size != info.bytes or found.metadata.get(LINES_DIGEST) != info.digest:
        return None
    if found.metadata.get(LINES_SETTINGS) != settings:  # the spec changed since the cut:
        return None  # rendering with the current settings says whether the plan still holds
    try:
        copy_within(step.s3, staged, found.etag, target)
    except ClientError as e:
        if e.response["Error"]["Code"] != "PreconditionFailed":
            raise
        raise RuntimeError(
            f"shard {info.key}: {staged.uri} changed while it was copied (raw_dataset re-cut the shards meanwhile?); "
            "materialize jsonl_shards again for the current shard plan"
        ) from None
    return ShardInput(info.key, info.records, info.bytes, target.uri)


def render_shard_input(step: Step, info: ShardInfo) -> tuple[ShardInput, BinaryIO]:
    """The shard's JSONL input rendered from its rows and checked against the shard index: what it is and the
    open file holding it, at its start (the caller closes it: ``upload_shard_input``). For a shard without
    staged lines that match its plan.

    The lines are rendered into memory up to the single-PUT size (a temporary file beyond it).
    """
    layout = step.layout
    columns = [*dict.fromkeys([*step.adapter.input_columns(), RECORD_ID])]
    digest = hashlib.sha256()
    records = 0
    out = tempfile.SpooledTemporaryFile(max_size=SINGLE_PUT_BYTES, prefix="bedrock-assets-shard-")
    try:
        with local_copy(step.s3, layout.shard_rows(info.key)) as rows_path:
            part = pq.ParquetFile(rows_path)
            if MAX_TOKENS in part.schema_arrow.names:  # a retry shard: some requests may have a raised max_tokens
                columns.append(MAX_TOKENS)
            cached = CACHED_FROM in part.schema_arrow.names  # the rows the record cache answers are not sent
            for batch in part.iter_batches(columns=columns + ([CACHED_FROM] if cached else []), batch_size=BATCH_ROWS):
                if cached:
                    batch = batch.filter(pc.is_null(batch.column(CACHED_FROM)))
                requests, _ = rendered_requests(batch, step.adapter, step.resend_adapter)
                for piece in line_buffers(requests):
                    out.write(piece)
                    digest.update(piece)
                records += len(requests) - requests.null_count
        if digest.hexdigest() != info.digest or records != info.records:
            raise RuntimeError(
                f"shard {info.key}: rows in {layout.shard_rows(info.key).uri} no longer match the shard plan "
                "(re-materialize raw_dataset)"
            )
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return ShardInput(info.key, records, size, layout.shard_input(info.key).uri), out  # type: ignore[return-value]


def upload_shard_input(step: Step, written: ShardInput, body: BinaryIO) -> ShardInput:
    """PUT a rendered shard input where its job reads it, and close its file."""
    with body:
        upload_fileobj(step.s3, body, written.bytes, step.layout.shard_input(written.shard))
    return written
