"""raw_dataset: stream the source, give every row a stable record id and its request, cut quota-compliant shards.

Writes one canonical Parquet part per shard (the shard's input rows), its request lines as rendered for
the cut (``canonical/<shard>.jsonl``, which jsonl_shards copies where the job reads them), and the shard
index (``canonical/_shards.json``) that every shard step reads, and registers the shards as partitions.
A chained pipeline's source is its upstream's merged dataset, which this asset follows by automation.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import dagster as dg
from dagster_aws.s3 import S3Resource

from bedrock_assets import chain
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.errors import final_unless_transient
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.plan import PipelinePlan
from bedrock_assets.records import RECORD_ID, RecordIdIndex, prepare_batch
from bedrock_assets.sharding import Shard, ShardCutter
from bedrock_assets.shards import (
    BATCH_ROWS,
    RetryState,
    ShardIndex,
    ShardParts,
    load_retry_state,
    load_shard_index_if_any,
    round_of,
    save_retry_state,
    save_shard_index,
    shard_key,
)
from bedrock_assets.sources import SourceError, SourceFile, iter_batches, read_columns, resolve_files


def build(p: Pipeline) -> dg.AssetsDefinition:
    upstream = p.spec.source.pipeline  # a chain: another pipeline's merged dataset is the source

    @p.asset(
        p.keys.raw_dataset,
        kinds={"parquet", "s3"},
        deps=[chain.upstream_key(upstream)] if upstream else None,
        # a chain follows its upstream: a new merged dataset there re-reads this source (unchanged shards
        # keep their jobs, so nothing is paid twice)
        automation_condition=dg.AutomationCondition.eager() if upstream else None,
        output_required=not upstream,
        description=f"Source {p.spec.source.uri or f'{upstream}/merged_dataset'} with stable record ids and "
        "validated requests, cut into quota-compliant shards (registers the shard partitions).",
    )
    @final_unless_transient
    def raw_dataset(
        context: dg.AssetExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource
    ) -> Iterator[dg.MaterializeResult]:
        yield from materialize(context, p.step(s3, bedrock))

    return raw_dataset


def materialize(context: dg.AssetExecutionContext, step: Step) -> Iterator[dg.MaterializeResult]:
    """Prepare the dataset and make the shard partitions what it cut (nothing while a chain's upstream has none)."""
    previous = load_shard_index_if_any(step)
    upstream = step.spec.source.pipeline
    try:
        source_uri = chain.upstream_uri(context.instance, upstream) if upstream else None
    except SourceError as waiting:  # the upstream has no merged dataset yet: nothing to read, not a failure
        context.log.warning(str(waiting))
        return
    index = prepare_dataset(step, log=context.log.debug, source_uri=source_uri)
    same_shards = previous is not None and previous.same_shards(index)
    if not same_shards:  # retry rounds were cut from shards that no longer exist as they were; a stop holds
        save_retry_state(step, RetryState(stopped_at=load_retry_state(step).stopped_at))
    stale = register_shards(context.instance, step.keys.partitions, index.keys, keep_retry_shards=same_shards)
    context.log.info(f"{index.rows} rows in {len(index.shards)} shards ({index.rejected} rejected before submission)")
    plan = PipelinePlan.of(step, index)
    if plan.price is None:
        context.log.warning(f"{step.name}: cost unknown: no price for {step.spec.model.id} (set price_overrides)")
    yield dg.MaterializeResult(metadata={**index.metadata(step), **plan.metadata(), "removed_stale_shards": len(stale)})


def register_shards(
    instance: dg.DagsterInstance, partitions: str, keys: Sequence[str], keep_retry_shards: bool
) -> list[str]:
    """Make the shard partitions ``keys`` (plus the retry shards, when the shards are the same as before);
    returns the partitions removed."""
    stale = [
        k
        for k in instance.get_dynamic_partitions(partitions)
        if k not in keys and not (keep_retry_shards and round_of(k) > 0)
    ]
    for key in stale:
        instance.delete_dynamic_partition(partitions, key)
    instance.add_dynamic_partitions(partitions, list(keys))
    return stale


def source_files(step: Step, source_uri: str | None) -> list[SourceFile]:
    """The source's data files, with the columns the prompt and id column need checked against the first."""
    spec = step.spec
    uri = source_uri or spec.source.uri
    if uri is None:
        raise SourceError(f"{spec.name}: source.pipeline {spec.source.pipeline!r}: where its merged dataset is")
    files = resolve_files(uri, spec.source.format, step.s3)
    columns = read_columns(files[0], step.s3)
    view = chain.ChainView.of(spec.source)
    spec.check_columns([view.name(c) for c in view.selected(columns)] if view else columns, files[0].uri)
    return files


def prepare_dataset(
    step: Step,
    log: Callable[[str], None] | None = None,
    write_parts: bool = True,
    source_uri: str | None = None,
) -> ShardIndex:
    """Read the whole source once, in batches, and write the shard parts and the shard index.

    ``write_parts=False`` (``bedrock-assets plan``): the same index, with nothing written anywhere.
    ``source_uri``: where a chained pipeline's upstream merged dataset is (see ``chain``).
    """
    spec = step.spec
    files = source_files(step, source_uri)
    view = chain.ChainView.of(spec.source)
    # shards fill to the quota, so a boundary depends only on the rows before it: appending rows
    # changes the last shard or two, never the ones before (their inputs, and so their jobs, stay)
    cutter = ShardCutter(step.quotas)
    ids = RecordIdIndex()
    position = rejected = 0
    before = load_shard_index_if_any(step) if spec.cache else None  # unchanged shards keep their cached records
    with ShardParts(step, write=write_parts, previous=before.shards if before else ()) as parts:

        def add(shard: Shard) -> None:
            info = parts.add(shard_key(len(parts.shards)), shard)
            if log:
                log(f"shard {info.key}: {info.records} records, {info.bytes} bytes")

        for sb in iter_batches(files, step.s3, BATCH_ROWS):
            if view is not None:  # a chain: the upstream rows and columns this pipeline reads, numbered anew
                sb = replace(sb, batch=view.apply(sb.batch), first_row=position)
            prepared = prepare_batch(sb, position, step.adapter, spec.source.id_column)
            if spec.source.id_column:  # derived ids are unique by construction
                ids.add(prepared.table.column(RECORD_ID).combine_chunks())
            rejected += int((prepared.weights == 0).sum())
            position += sb.batch.num_rows
            for shard in cutter.add(prepared.table, prepared.weights, prepared.line_bytes):
                add(shard)
        for shard in cutter.finish():
            add(shard)
    _check_unique(ids, step)
    index = ShardIndex([f.uri for f in files], position, rejected, parts.shards)
    if write_parts:
        save_shard_index(step, index)
    return index


def _check_unique(ids: RecordIdIndex, step: Step) -> None:
    duplicates = ids.duplicate_positions()
    if duplicates.size:
        source = step.spec.source
        raise SourceError(
            f"source {source.uri}: id column {source.id_column!r} is not unique: "
            f"{duplicates.size} row(s) repeat an earlier id (first at dataset row {int(duplicates[0])})"
        )
