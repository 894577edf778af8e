"""merged_dataset: every first-pass shard, one at a time, each record with its final outcome after the retry rounds.

Published once every shard and retry round is merged: the completion sensor requests it then (a run
started earlier by hand says why not in its ``complete`` check and materializes nothing); its
materialization is the pipeline's report (``report.PipelineReport``):
rows and outcomes, retries, tokens, the bill, and which job of every shard it was built from.
``read_merged_dataset`` reads it back as a DataFrame.
"""

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue
from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.costs import Bill
from bedrock_assets.bedrock.prices import usd
from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.errors import final_unless_transient
from bedrock_assets.graph.merged_results import outcome_counts
from bedrock_assets.ledger import JobAttempt, JobLedger, JobLedgerResource
from bedrock_assets.metadata import table
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.plan import PipelinePlan
from bedrock_assets.progress import (
    MergedMark,
    PipelineStatus,
    RoundProgress,
    jobs_digest,
    latest_merges,
    merged_jobs,
    retry_due,
    unmerged,
)
from bedrock_assets.records import ANSWERED_BY, RECORD_ID
from bedrock_assets.report import Cost, MergedDataset, PipelineReport
from bedrock_assets.shards import (
    MissingShardIndex,
    RetryRound,
    ShardIndex,
    load_retry_state,
    load_shard_index,
    round_of,
    span,
)
from bedrock_assets.spec import PipelineSpec
from bedrock_assets.storage import S3Access, local_copy, upload_file

if TYPE_CHECKING:
    import pandas

COMPLETE_CHECK = "complete"
FAILED_ROWS = (
    "bedrock_assets/failed_rows"  # on the step's failure: the dataset was published, its complete check failed
)
SAMPLE_ROWS = 5  # rows of the dataset shown on its materialization
ATTEMPTS = "attempts"  # how many rounds (first pass + retry rounds) sent the record to Bedrock


def build(p: Pipeline) -> dg.AssetsDefinition:
    @p.asset(
        p.keys.merged_dataset,
        deps=[p.keys.merged_results],
        kinds={"parquet", "s3"},
        output_required=False,  # requested by the completion sensor once every shard and retry round is merged
        check_specs=[
            dg.AssetCheckSpec(
                COMPLETE_CHECK,
                asset=p.keys.merged_dataset,
                description="every input row is in the merged dataset and at most max_error_rate of them failed "
                "(warns while shards are still being merged)",
            )
        ],
        description="All merged shards in one Parquet dataset, each record with its outcome from the last retry "
        "round that holds it (materialized once every shard and retry round is merged).",
    )
    @final_unless_transient
    def merged_dataset(
        context: dg.AssetExecutionContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> Iterator[Any]:
        yield from materialize(context, p.step(s3, bedrock), bedrock_ledger.get_ledger())

    return merged_dataset


def materialize(context: dg.AssetExecutionContext, step: Step, ledger: JobLedger) -> Iterator[Any]:
    """The dataset and its report once every shard and retry round is merged; else why not (the run succeeds)."""
    try:
        index = load_shard_index(step)
    except MissingShardIndex:
        yield _not_complete(
            context,
            "the shards are not planned yet (raw_dataset had not run when this step started); "
            "merged_dataset is materialized automatically once every shard is merged",
            waiting=None,
        )
        return
    latest = ledger.latest_by_shard(step.name)
    partitions = context.instance.get_dynamic_partitions(step.keys.partitions)
    marks = latest_merges(context.instance, step.keys.merged_results)
    waiting = waiting_for(step, partitions, latest, marks)
    if waiting is not None:
        yield _not_complete(context, *waiting)
        return
    state = load_retry_state(step)
    retry_keys = [k for r in state.rounds for k in r.keys if k in partitions]
    dataset = merge_dataset(step, index.keys, retry_keys, state.rounds)
    check = complete_check(dataset, index.rows, step.spec.max_error_rate, latest, partitions)
    report = pipeline_report(step, ledger, index, dataset, {k: latest[k] for k in partitions})
    yield dg.MaterializeResult(metadata=report.metadata(), check_results=[check])
    if not check.passed:  # published, and red: a result that did not fully succeed never looks green
        raise dg.Failure(
            f"{step.name}: {check.description}", metadata={FAILED_ROWS: dataset.failed}, allow_retries=False
        )


def waiting_for(
    step: Step, partitions: Sequence[str], latest: Mapping[str, JobAttempt], marks: Mapping[str, MergedMark]
) -> tuple[str, int] | None:
    """Why the dataset cannot be published yet, and how many shards are not merged (None: it can)."""
    waiting = unmerged(partitions, latest, merged_jobs(marks))
    if waiting:
        return (
            f"{len(waiting)} of {len(partitions)} shards are not merged yet ({span(waiting)}); "
            "merged_dataset is materialized automatically once they are",
            len(waiting),
        )
    progress = RoundProgress.of(partitions, latest, marks)
    if retry_due(step, progress):
        return (
            f"retry round {progress.round + 1} is due ({progress.retriable} retriable rows); merged_dataset is "
            "materialized automatically after the last round",
            0,
        )
    return None


def _not_complete(context: dg.AssetExecutionContext, reason: str, waiting: int | None) -> dg.AssetCheckResult:
    """merged_dataset cannot be built yet: say why (routine progress: INFO), and leave the asset unmaterialized
    (the run succeeds)."""
    context.log.info(reason)
    return dg.AssetCheckResult(
        check_name=COMPLETE_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=reason,
        metadata={"shards_not_merged": waiting} if waiting is not None else {},
    )


def pipeline_report(
    step: Step, ledger: JobLedger, index: ShardIndex, dataset: MergedDataset, latest: Mapping[str, JobAttempt]
) -> PipelineReport:
    """The report of a published dataset: ``latest`` holds the current attempt of every shard partition."""
    shards = list(latest)
    price = step.price
    bill = Bill.of(ledger.attempts_of(step.name), price)  # every attempt that ran
    estimate = PipelinePlan.of(step, index).estimate.cost(price)
    jobs = [
        {
            "shard": k,
            "status": a.status.value,
            "job_arn": a.job_arn or "",
            "cost_usd": usd(bill.by_shard.get(k) if price is not None else None),
            "message": (a.message or "") if not a.status.has_output else "",
        }
        for k, a in latest.items()
    ]
    return PipelineReport(
        dataset=dataset,
        input_tokens=sum(a.input_tokens or 0 for a in latest.values()),
        output_tokens=sum(a.output_tokens or 0 for a in latest.values()),
        jobs_digest=jobs_digest(shards, latest),
        cost=Cost(bill.total, bill.batch, bill.on_demand),
        planned_expected=estimate.expected if estimate is not None else None,
        planned_worst=estimate.worst if estimate is not None else None,
        cost_by_round=bill.by_round(round_of),
        cost_by_lane=bill.by_lane() + cache_lane(dataset.from_cache),
        job_statuses=PipelineStatus.of(shards, latest, {}).jobs,
        jobs=jobs,
    )


def cache_lane(rows: int) -> list[dict[str, Any]]:
    """The record cache's line of the bill: the rows it answered, at no cost."""
    return [{"lane": "record cache (paid before)", "records": rows, "cost": usd(0.0)}] if rows else []


def merge_dataset(
    step: Step, shards: list[str], retry_shards: Sequence[str] = (), rounds: Sequence[RetryRound] = ()
) -> MergedDataset:
    """Write ``merged_dataset/data.parquet``: the first-pass shards in order, one at a time, each record
    with its outcome from the last retry round that holds it, and how many rounds it took (``attempts``)."""
    layout, s3 = step.layout, step.s3
    totals: dict[str, int] = {}
    failed_by_shard: dict[str, int] = {}
    sample: pa.Table | None = None
    rows = from_cache = 0
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-dataset-") as tmp:
        retried = _final_retry_outcomes(step, retry_shards)
        out_path = Path(tmp) / "data.parquet"
        writer: pq.ParquetWriter | None = None
        try:
            for shard in shards:
                with local_copy(s3, layout.merged(shard)) as part:
                    merged = with_final_outcomes(_plain(pq.read_table(part)), retried)
                answered = merged.column(ANSWERED_BY)
                from_cache += len(answered) - answered.null_count
                if writer is None:
                    writer = pq.ParquetWriter(out_path, merged.schema)
                    sample = merged.slice(0, SAMPLE_ROWS)
                writer.write_table(conform(merged, writer.schema, shard))
                for code, n in outcome_counts(merged):
                    totals[code] = totals.get(code, 0) + n
                    if code != "ok":
                        failed_by_shard[shard] = failed_by_shard.get(shard, 0) + n
                rows += merged.num_rows
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
        resent_in_batch_jobs=sum(s.records for r in rounds for s in r.shards if not s.on_demand),
        resent_on_demand=sum(s.records for r in rounds for s in r.shards if s.on_demand),
        failed_by_shard=failed_by_shard,
        from_cache=from_cache,
        sample=sample,
    )


def _plain(rows: pa.Table) -> pa.Table:
    """Dictionary columns (shard, job_arn, source_file) differ per part: plain text in the dataset; and every
    column nullable (parts merged by different runs may differ only in that, e.g. a regenerated source). A part
    merged before the record cache existed gets its (empty) ``cached_from`` column."""
    if ANSWERED_BY not in rows.column_names:
        rows = rows.append_column(ANSWERED_BY, pa.nulls(rows.num_rows, pa.string()))
    return rows.cast(
        pa.schema(
            [
                pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type, nullable=True)
                for f in rows.schema
            ]
        )
    )


def conform(part: pa.Table, schema: pa.Schema, shard: str) -> pa.Table:
    """The shard's part in the dataset's schema (that of the first part); a column whose type changed between
    the runs that merged the parts is refused, by name."""
    if part.schema.equals(schema):
        return part
    if part.schema.names != schema.names:
        raise ValueError(
            f"merged_dataset: shard {shard} has the columns {part.schema.names}, the shards before it "
            f"{schema.names}: the source's columns changed between runs; materialize every shard again "
            "(bedrock-assets run re-prepares them all when the source changes)"
        )
    for field in schema:
        found = part.schema.field(field.name).type
        if found != field.type:
            raise ValueError(
                f"merged_dataset: column {field.name!r} is {found} in shard {shard} but {field.type} in the shards "
                "before it: the source changed type between runs; make the type the same in every source file "
                "and materialize every shard again"
            )
    return part.cast(schema)


def _final_retry_outcomes(step: Step, retry_shards: Sequence[str]) -> pa.Table | None:
    """Every retried record once, from the merged retry shards (held in memory: the retried rows only,
    the retriable share of the dataset, not the dataset)."""
    if not retry_shards:
        return None
    parts = []
    for key in retry_shards:  # in round order
        with local_copy(step.s3, step.layout.merged(key)) as part:
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


def with_final_outcomes(rows: pa.Table, retried: pa.Table | None) -> pa.Table:
    """A first-pass shard's rows, each replaced by its final retry outcome where it has one (shard kept)."""
    n = rows.num_rows
    if retried is None:
        return rows.append_column(ATTEMPTS, pa.array(np.ones(n, np.int64)))
    index = pc.index_in(rows.column(RECORD_ID), value_set=retried.column(RECORD_ID))
    replaced = pc.is_valid(index)
    first_pass = rows.append_column(ATTEMPTS, pa.array(np.ones(n, np.int64)))
    candidates = pa.concat_tables([first_pass, retried.select(first_pass.column_names).cast(first_pass.schema)])
    positions = pc.if_else(replaced, pc.add(pc.cast(index, pa.int64()), n), pa.array(np.arange(n), pa.int64()))
    final = candidates.take(positions)
    return final.set_column(final.schema.get_field_index("shard"), "shard", rows.column("shard"))


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
    # jobs that ended without output: those whose rows still failed in the end, and those the rounds made good
    ended = [latest[k] for k in shards if k in latest and round_of(k) == 0 and not latest[k].status.has_output]
    failed_jobs = [a for a in ended if dataset.failed_by_shard.get(a.shard, 0)]
    recovered = [a for a in ended if not dataset.failed_by_shard.get(a.shard, 0)]
    return AssetCheckResult(
        check_name=COMPLETE_CHECK,
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
                [
                    {
                        "shard": a.shard,
                        "status": a.status.value,
                        "failed_rows": dataset.failed_by_shard[a.shard],
                        "message": a.message or "",
                    }
                    for a in failed_jobs
                ],
                ["shard", "status", "failed_rows", "message"],
            ),
            "failed_jobs_recovered": table(
                [{"shard": a.shard, "status": a.status.value, "message": a.message or ""} for a in recovered],
                ["shard", "status", "message"],
            ),
        },
    )


def read_merged_dataset(
    pipeline: PipelineSpec | str | Path, columns: Sequence[str] | None = None, s3: Any = None
) -> "pandas.DataFrame":
    """A pipeline's merged dataset (every input row with its output or error) as a DataFrame.

    ``pipeline`` is the pipeline's ``defs.yaml`` (or its folder) or a loaded spec; S3 is reached
    with boto3's standard configuration unless a client is given.

        from bedrock_assets import read_merged_dataset
        df = read_merged_dataset("bedrock_assets/defs/cot_answers")
    """
    import boto3

    if not isinstance(pipeline, PipelineSpec):
        from bedrock_assets.components.loading import load_pipelines

        (pipeline,) = load_pipelines(Path(pipeline))
    step = Step.of(pipeline, S3Access(s3 or boto3.client("s3"), pipeline.expected_bucket_owner))
    with local_copy(step.s3, step.layout.merged_dataset) as path:
        return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def find_record(spec: PipelineSpec, record_id: str, s3: Any = None) -> dict[str, Any] | None:
    """One record's row of the merged dataset (its outcome and lineage), or None if the dataset lacks it."""
    import boto3

    step = Step.of(spec, S3Access(s3 or boto3.client("s3"), spec.expected_bucket_owner))
    with local_copy(step.s3, step.layout.merged_dataset) as path:
        rows = pq.read_table(path, filters=[(RECORD_ID, "==", record_id)]).to_pylist()
    return rows[0] if rows else None


def describe_record(row: Mapping[str, Any]) -> list[str]:
    """The lines ``bedrock-assets show`` prints for one record: its outcome, where it came from, which job
    answered it, and every column."""
    outcome = (
        "succeeded" if row.get("error_code") is None else f"failed: {row['error_code']}: {row.get('error_message')}"
    )
    rounds = int(row.get(ATTEMPTS) or 1)
    lines = [
        f"record {row[RECORD_ID]}: {outcome}",
        f"  from {row.get('source_file')} row {row.get('source_row')}; first-pass shard {row.get('shard')}",
        f"  final outcome from {row.get('job_arn') or 'no job'}"
        + (f" after {rounds - 1} retry round(s)" if rounds > 1 else " (first pass)"),
    ]
    for name, value in row.items():
        if isinstance(value, list):
            value = f"[{len(value)} values]"
        lines.append(f"  {name}: {value}")
    return lines
