"""retry_rounds: the retriable records of a finished round, pooled into the shards of the next one.

Round 0 is the first pass (shards ``s00000``...). When every shard of the latest round is merged and
some rows carry a retriable error (``bedrock.error_classes``), round N+1 takes exactly those rows
(same record ids, same request bodies) from all of that round's shards, cuts them into shards within
every batch quota, and registers them as partitions ``r<N+1>-00000``... of the same shard assets, so
they are submitted, polled and merged like any shard. A round with fewer records than a job's
minimum runs on demand (the runtime API) or is not made, as ``retry.small_remainder`` says.
merged_dataset then takes each record's outcome from the last round that holds it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import MetadataValue
from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.error_classes import TRUNCATED_STRUCTURED, to_resend
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.deadline import is_past_cutoff
from bedrock_assets.errors import final_unless_transient
from bedrock_assets.ledger import JobLedgerResource
from bedrock_assets.metadata import table
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.progress import RoundProgress, latest_merges
from bedrock_assets.records import INPUT_ERROR, MAX_TOKENS, RECORD_ID, REQUEST, SOURCE_FILE, rendered_requests
from bedrock_assets.sharding import Shard, ShardCutter
from bedrock_assets.shards import RetryRound, ShardInfo, ShardParts, load_retry_state, retry_key, save_retry_state
from bedrock_assets.spec import RetrySpec
from bedrock_assets.storage import local_copy


def build(p: Pipeline) -> dg.AssetsDefinition:
    @p.asset(
        p.keys.retry_rounds,
        deps=[p.keys.merged_results],
        kinds={"parquet", "s3"},
        description="Cuts the next retry round: the retriable records of every shard of the finished round, "
        "pooled into new shards (r<N>-00000...) of the same shard assets, or answered on demand when fewer "
        "than a job's minimum. Requested by the completion sensor.",
    )
    @final_unless_transient
    def retry_rounds(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.MaterializeResult:
        step = p.step(s3, bedrock)
        partitions = context.instance.get_dynamic_partitions(p.keys.partitions)
        latest = bedrock_ledger.get_ledger().latest_by_shard(p.name)
        marks = latest_merges(context.instance, p.keys.merged_results)
        decision = cut_next_round(step, RoundProgress.of(partitions, latest, marks))
        for key in decision.removed:
            context.instance.delete_dynamic_partition(p.keys.partitions, key)
        if decision.round is not None:
            context.instance.add_dynamic_partitions(p.keys.partitions, decision.round.keys)
        context.log.info(f"{p.name}: {decision.reason}")
        return dg.MaterializeResult(metadata=decision.metadata())

    return retry_rounds


@dataclass(frozen=True)
class RoundDecision:
    """What the retry_rounds step did: the round it cut (or kept), or why it cut none."""

    round: RetryRound | None
    reason: str
    removed: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        r = self.round
        meta: dict[str, Any] = {"decision": MetadataValue.text(self.reason)}
        if r is not None:
            meta |= {
                "round": r.round,
                "records": r.records,
                "shards": len(r.shards),
                "on_demand": r.on_demand,
                "retry_shards": table([{"shard": s.key, "records": s.records, "bytes": s.bytes} for s in r.shards]),
            }
        return meta


def cut_next_round(step: Step, progress: RoundProgress) -> RoundDecision:
    """Cut round ``progress.round + 1`` from the retriable rows of the latest round's merged shards.

    Idempotent: a round already cut from the same merged jobs is kept as it is (its shards, and so
    their job names, stay the same); rounds cut from jobs that have since changed are replaced.
    """
    state = load_retry_state(step)
    number = progress.round + 1
    min_records = step.quotas.min_records_per_job
    if state.stopped_at:
        return RoundDecision(None, f"no retry round: the pipeline was stopped at {state.stopped_at}")
    cut_off = is_past_cutoff(step)
    if not progress.next_round_due(step.spec.retry, min_records, cut_off):
        return RoundDecision(None, _why_not(progress, step.spec.retry, min_records))
    kept = [r for r in state.rounds if r.round < number]
    existing = next((r for r in state.rounds if r.round == number), None)
    if existing is not None and existing.basis == progress.basis:
        return RoundDecision(existing, f"round {number} was already planned from these jobs")
    on_demand = progress.retriable < min_records
    shards, left = _cut_round(step, progress.keys, number, on_demand, all_on_demand=cut_off)
    records = sum(s.records for s in shards)
    new = RetryRound(number, progress.basis, records, on_demand, shards)
    removed = [s.key for r in state.rounds if r.round >= number for s in r.shards if s.key not in new.keys]
    save_retry_state(step, replace(state, rounds=[*kept, new]))
    how = (
        "on demand (fewer than a job's minimum)"
        if on_demand
        else "on demand (past the deadline's batch cutoff)"
        if cut_off
        else _how(shards, left)
    )
    return RoundDecision(
        new, f"round {number}: {records} retriable record(s) of round {progress.round}, {how}", removed
    )


def _how(shards: Sequence[ShardInfo], left: int) -> str:
    """How a round sends its records: in batch jobs, and the rows no cut within the quotas held."""
    tail = sum(s.records for s in shards if s.on_demand)
    how = f"in {sum(not s.on_demand for s in shards)} batch job(s)"
    if tail:
        how += f", and {tail} that no cut within the job quotas holds on demand"
    if left:
        how += f"; {left} that no cut within the job quotas holds are left (retry.small_remainder: leave)"
    return how


def _why_not(progress: RoundProgress, retry: RetrySpec, min_records: int) -> str:
    if not progress.all_merged:
        return f"no retry round yet: round {progress.round} is not fully merged"
    if progress.retriable == 0:
        return f"no retry round: round {progress.round} left no retriable rows"
    if progress.round >= retry.max_rounds:
        return f"no retry round: retry.max_rounds ({retry.max_rounds}) reached; {progress.retriable} rows stay failed"
    return (
        f"no retry round: {progress.retriable} retriable rows, fewer than a job's minimum of {min_records}, "
        "and retry.small_remainder is 'leave'"
    )


def _cut_round(
    step: Step, sources: Sequence[str], number: int, on_demand: bool, all_on_demand: bool = False
) -> tuple[list[ShardInfo], int]:
    """Stream the retriable rows of ``sources`` shard by shard into the new round's shard parts; also the
    number of records left out (no cut within the quotas holds them, and small_remainder is 'leave').
    ``all_on_demand`` (past a deadline's cutoff): shards cut as for jobs, each answered on demand."""
    cutter = ShardCutter(step.quotas)
    left = 0
    pending: list[pa.Table] = []  # on demand: fewer rows than one job's minimum
    with ShardParts(step) as parts:

        def add(shard: Shard, answer_on_demand: bool = on_demand or all_on_demand) -> None:
            parts.add(retry_key(number, len(parts.shards)), shard, answer_on_demand)

        for source in sources:
            rows = _retriable_rows(step, source)
            if rows is None:
                continue
            if on_demand:
                pending.append(rows)
                continue
            sent = pc.is_valid(rows.column(REQUEST)).to_numpy(zero_copy_only=False).astype(np.int64)
            sizes = pc.fill_null(pc.add(pc.binary_length(rows.column(REQUEST)), 1), 0)
            for shard in cutter.add(rows, sent, sizes.to_numpy(zero_copy_only=False).astype(np.int64)):
                add(shard)
        if on_demand and pending:
            rows = pa.concat_tables(pending)
            requests = rows.column(REQUEST)
            line_bytes = pc.sum(pc.add(pc.binary_length(requests), 1)).as_py() or 0
            add(Shard(rows, len(requests) - requests.null_count, int(line_bytes)))
        elif not on_demand:
            # records no cut within the quotas can hold: the small-remainder path, never a crash
            for shard in cutter.finish(short_tail=True):
                if not shard.below_minimum:
                    add(shard)
                elif step.spec.retry.small_remainder == "on_demand" or all_on_demand:
                    add(shard, answer_on_demand=True)
                else:
                    left += shard.records
    return parts.shards, left


def _retriable_rows(step: Step, source: str) -> pa.Table | None:
    """The rows of shard ``source`` the next round sends again (``to_resend``), with their requests rendered
    again (None if there are none): a structured answer cut off at the token limit with its max_tokens raised
    to ``retry.truncated_max_tokens``. A request the adapter now refuses is not sent again: it ends as
    InvalidModelInput (final)."""
    layout = step.layout
    with local_copy(step.s3, layout.shard_rows(source)) as path:
        rows = _with_max_tokens(pq.read_table(path))
    with local_copy(step.s3, layout.merged(source)) as path:
        merged = pq.read_table(path, columns=[RECORD_ID, "error_code", "error_message"])
    codes, messages = merged.column("error_code"), merged.column("error_message")
    raised = rows.column(MAX_TOKENS).take(pc.index_in(merged.column(RECORD_ID), value_set=rows.column(RECORD_ID)))
    resend = to_resend(codes, messages, raised, step.resend_adapter is not None)
    ids = merged.column(RECORD_ID).filter(resend)
    if len(ids) == 0:
        return None
    cut_off = merged.column(RECORD_ID).filter(pc.and_(resend, pc.equal(codes, TRUNCATED_STRUCTURED)))
    rows = rows.filter(pc.is_in(rows.column(RECORD_ID), value_set=ids.combine_chunks()))
    rows = rows.filter(pc.is_null(rows.column(INPUT_ERROR)))
    if len(cut_off):
        to_raise = pc.is_in(rows.column(RECORD_ID), value_set=cut_off.combine_chunks())
        raised_to = pa.scalar(step.spec.retry.truncated_max_tokens, pa.int64())
        rows = rows.set_column(
            rows.schema.get_field_index(MAX_TOKENS),
            MAX_TOKENS,
            pc.if_else(to_raise, raised_to, rows.column(MAX_TOKENS)),
        )
    # one plain type across shards (each part has its own dictionary)
    rows = rows.set_column(
        rows.schema.get_field_index(SOURCE_FILE), SOURCE_FILE, pc.cast(rows.column(SOURCE_FILE), pa.string())
    )
    requests, errors = rendered_requests(rows, step.adapter, step.resend_adapter)
    rows = rows.set_column(rows.schema.get_field_index(INPUT_ERROR), INPUT_ERROR, errors)
    return rows.append_column(REQUEST, requests)


def _with_max_tokens(rows: pa.Table) -> pa.Table:
    """A shard's rows with the ``MAX_TOKENS`` column (first-pass shards have none: every row at max_tokens)."""
    if MAX_TOKENS in rows.column_names:
        return rows
    return rows.append_column(MAX_TOKENS, pa.nulls(rows.num_rows, pa.int64()))
