"""The asset graph of one pipeline spec (one asset group per pipeline).

raw_dataset -> jsonl_shards[shard] -> batch_jobs[shard] -(completion sensor)-> batch_job_outputs[shard]
-> merged_results[shard] -> merged_dataset
"""


import warnings
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    SensorDefinition,
    asset,
)
from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock import BedrockBatchResource, CallCounter, JobSettings, ShardToSubmit, submit_shards
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import QUEUED, SUBMIT_FAILED, TERMINAL, JobLedgerResource
from bedrock_assets.prepare import ShardInfo, load_shard_index, prepare_dataset, write_shard_input
from bedrock_assets.results import JobInfo, collect_job_outputs, merge_dataset, merge_results
from bedrock_assets.sensors import PipelineKeys, build_completion_sensor
from bedrock_assets.spec import PipelineSpec


# BackfillPolicy on assets is marked beta in Dagster 1.13; we rely on it for one-run-per-backfill.
warnings.filterwarnings("ignore", category=BetaWarning, message=r".*backfill_policy.*")


@dataclass
class PipelineDefs:
    spec: PipelineSpec
    keys: PipelineKeys
    partitions: DynamicPartitionsDefinition
    assets: list[AssetsDefinition]
    sensor: SensorDefinition


def _md_table(rows: list[dict[str, Any]], limit: int = 50) -> MetadataValue:
    if not rows:
        return MetadataValue.md("_none_")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n… {len(rows) - limit} more")
    return MetadataValue.md("\n".join(lines))


def _shards_by_key(spec: PipelineSpec, s3: Any, keys: list[str]) -> list[ShardInfo]:
    index = {s.key: s for s in load_shard_index(spec, s3).shards}
    missing = [k for k in keys if k not in index]
    if missing:
        raise Failure(f"shard(s) {missing} are not in the current shard plan; re-materialize raw_dataset")
    return [index[k] for k in keys]


def build_pipeline(spec: PipelineSpec) -> PipelineDefs:
    """All assets, checks and the completion sensor of one pipeline."""
    keys = PipelineKeys.for_pipeline(spec.name)
    shards_def = DynamicPartitionsDefinition(name=f"{spec.name}__shards")
    layout = PipelineLayout.for_uri(spec.output_uri)
    group = spec.name
    model_kind = {"bedrock", "s3"}
    one_run = BackfillPolicy.single_run()

    def _finished_job(job_ledger: Any, shard: str) -> tuple[dict[str, Any], JobInfo]:
        """The shard's latest ledger attempt; Failure unless its job has reached a terminal state."""
        item = job_ledger.latest(spec.name, shard)
        if item is None or item["status"] not in (*TERMINAL, SUBMIT_FAILED):
            raise Failure(
                f"shard {shard}: job is {item['status'] if item else 'not submitted'}; outputs are read "
                "once it reaches a terminal state (the completion sensor requests this run)"
            )
        return item, JobInfo(shard, item.get("job_arn"), item["status"], item.get("message"))

    @asset(
        key=keys.raw_dataset, group_name=group, kinds={"parquet", "s3"},
        description=f"Source {spec.source.uri} with stable record ids and validated requests, "
                    "cut into quota-compliant shards (registers the shard partitions).",
    )
    def raw_dataset(context: AssetExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource) -> MaterializeResult:
        client = s3.get_client()
        prepared = prepare_dataset(spec, client, bedrock.quota_overrides, log=context.log.debug)
        new_keys = [s.key for s in prepared.shards]
        stale = [k for k in context.instance.get_dynamic_partitions(shards_def.name) if k not in new_keys]
        for key in stale:
            context.instance.delete_dynamic_partition(shards_def.name, key)
        context.instance.add_dynamic_partitions(shards_def.name, new_keys)
        return MaterializeResult(metadata={
            "rows": prepared.rows,
            "rejected_rows": prepared.rejected,
            "shards": len(prepared.shards),
            "source_files": len(prepared.files),
            "shard_plan": _md_table([{"shard": s.key, "rows": s.rows, "records": s.records, "bytes": s.bytes}
                                     for s in prepared.shards]),
            "canonical_uri": MetadataValue.path(layout.root.join("canonical").uri),
            "removed_stale_shards": len(stale),
        })

    @asset(
        key=keys.jsonl_shards, group_name=group, deps=[keys.raw_dataset], partitions_def=shards_def,
        backfill_policy=one_run, kinds={"jsonl", "s3"}, automation_condition=AutomationCondition.eager(),
        check_specs=[AssetCheckSpec("within_batch_quotas", asset=keys.jsonl_shards, blocking=True,
                                    description="record count and bytes inside the model's batch quotas")],
        description="Each shard's Bedrock input file ({recordId, modelInput} lines).",
    )
    def jsonl_shards(context: AssetExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource) -> MaterializeResult:
        client = s3.get_client()
        quotas = spec.quotas(bedrock.quota_overrides)
        written = []
        for info in _shards_by_key(spec, client, context.partition_keys):
            written.append({"shard": info.key, **write_shard_input(spec, client, info)})
        violations = [
            w for w in written
            if not quotas.min_records_per_job <= w["records"] <= quotas.max_records_per_shard
            or w["bytes"] > quotas.max_shard_bytes
        ]
        return MaterializeResult(
            metadata={"shards": len(written), "records": sum(w["records"] for w in written),
                      "bytes": sum(w["bytes"] for w in written), "files": _md_table(written)},
            check_results=[AssetCheckResult(
                check_name="within_batch_quotas", passed=not violations,
                metadata={"violations": _md_table(violations),
                          "limits": f"{quotas.min_records_per_job}-{quotas.max_records_per_shard} records, "
                                    f"<= {quotas.max_shard_bytes} bytes"},
            )],
        )

    @asset(
        key=keys.batch_jobs, group_name=group, deps=[keys.jsonl_shards], partitions_def=shards_def,
        backfill_policy=one_run, kinds=model_kind, automation_condition=AutomationCondition.eager(),
        check_specs=[AssetCheckSpec("submitted", asset=keys.batch_jobs,
                                    description="every shard has a Bedrock job or waits for a slot")],
        description="Bedrock batch job per shard: quota-aware, idempotent submission (re-attaches on rerun). "
                    "Shards without a free slot are queued and submitted by the completion sensor.",
    )
    def batch_jobs(
        context: AssetExecutionContext, s3: S3Resource, bedrock: BedrockBatchResource, ledger: JobLedgerResource
    ) -> MaterializeResult:
        client = s3.get_client()
        settings = JobSettings(
            pipeline=spec.name, prefix=spec.job_prefix, model_id=spec.model.id,
            invocation_type=spec.model.invocation_type, role_arn=spec.role_arn, timeout_hours=spec.timeout_hours,
            tags=spec.tags, quotas=spec.quotas(bedrock.quota_overrides),
        )
        shards = [
            ShardToSubmit(i.key, i.digest, i.records, layout.shard_input(i.key).uri, layout.job_output(i.key).uri)
            for i in _shards_by_key(spec, client, context.partition_keys)
        ]
        counter = CallCounter()
        outcomes = submit_shards(bedrock, ledger.get_ledger(), settings, shards, counter)
        for o in outcomes:
            context.log.info(f"{o.shard}: {o.status} {o.job_arn or ''} {o.detail}".strip())
        failed = [o for o in outcomes if o.status == SUBMIT_FAILED]
        rows = [{"shard": o.shard, "attempt": o.attempt, "job_name": o.job_name, "status": o.status,
                 "job_arn": o.job_arn or "", "detail": o.detail} for o in outcomes]
        metadata: dict[str, Any] = {
            "submitted_or_attached": sum(1 for o in outcomes if o.job_arn),
            "queued": sum(1 for o in outcomes if o.status == QUEUED),
            "submit_failed": len(failed), "jobs": _md_table(rows), "bedrock_calls": counter.calls,
        }
        if len(outcomes) == 1 and outcomes[0].job_arn:
            metadata["job_arn"] = outcomes[0].job_arn
        return MaterializeResult(
            metadata=metadata,
            check_results=[AssetCheckResult(
                check_name="submitted", passed=not failed, severity=AssetCheckSeverity.ERROR,
                metadata={"failed": _md_table([r for r in rows if r["status"] == SUBMIT_FAILED])},
            )],
        )

    @asset(
        key=keys.batch_job_outputs, group_name=group, deps=[keys.batch_jobs], partitions_def=shards_def,
        backfill_policy=one_run, kinds=model_kind,
        description="The job's .jsonl.out lines and manifest.json.out, normalized into rows "
                    "(output or error_code/error_message, token counts).",
    )
    def batch_job_outputs(
        context: AssetExecutionContext, s3: S3Resource, ledger: JobLedgerResource
    ) -> MaterializeResult:
        client = s3.get_client()
        job_ledger = ledger.get_ledger()
        results = []
        for shard in context.partition_keys:
            item, job = _finished_job(job_ledger, shard)
            info = collect_job_outputs(spec, client, shard, job)
            job_ledger.update(spec.name, shard, item["attempt"], input_tokens=info["input_tokens"],
                              output_tokens=info["output_tokens"], not_returned=info["not_returned"])
            results.append({"shard": shard, **info})
        first = results[0]
        metadata: dict[str, Any] = {
            key: sum(r[key] for r in results)
            for key in ("records_sent", "succeeded", "errored", "not_returned", "duplicate_lines",
                        "input_tokens", "output_tokens")
        }
        if len(results) == 1:
            metadata.update(job_arn=first["job_arn"] or "", job_status=first["job_status"],
                            manifest=MetadataValue.json(first["manifest"]), uri=MetadataValue.path(first["uri"]),
                            error_codes=MetadataValue.json(first["error_codes"]))
        metadata["jobs"] = _md_table([{k: r[k] for k in ("shard", "job_status", "succeeded", "errored",
                                                         "not_returned", "job_arn")} for r in results])
        return MaterializeResult(metadata=metadata)

    @asset(
        key=keys.merged_results, group_name=group, deps=[keys.batch_job_outputs], partitions_def=shards_def,
        backfill_policy=one_run, kinds={"parquet", "s3"},
        check_specs=[AssetCheckSpec("every_input_row_once", asset=keys.merged_results, blocking=True,
                                    description="each input row of the shard appears exactly once")],
        description="Left join of outputs onto the shard's input rows: every row once, with output or error.",
    )
    def merged_results(
        context: AssetExecutionContext, s3: S3Resource, ledger: JobLedgerResource
    ) -> MaterializeResult:
        client = s3.get_client()
        job_ledger = ledger.get_ledger()
        results = []
        for shard in context.partition_keys:
            _, job = _finished_job(job_ledger, shard)
            results.append({"shard": shard, "job_arn": job.job_arn or "", **merge_results(spec, client, shard, job)})
        bad = [r for r in results if not (r["rows"] == r["input_rows"] == r["unique_ids"])]
        metadata: dict[str, Any] = {
            "rows": sum(r["rows"] for r in results), "succeeded": sum(r["ok"] for r in results),
            "failed": sum(r["rows"] - r["ok"] for r in results),
        }
        if len(results) == 1:
            metadata.update(job_arn=results[0]["job_arn"], uri=MetadataValue.path(results[0]["uri"]),
                            errors=MetadataValue.json(results[0]["errors"]))
        return MaterializeResult(
            metadata=metadata,
            check_results=[AssetCheckResult(
                check_name="every_input_row_once", passed=not bad,
                metadata={"shards_checked": len(results), "mismatches": _md_table(
                    [{k: r[k] for k in ("shard", "input_rows", "rows", "unique_ids")} for r in bad])},
            )],
        )

    @asset(
        key=keys.merged_dataset, group_name=group, deps=[keys.merged_results], kinds={"parquet", "s3"},
        automation_condition=AutomationCondition.eager(),
        check_specs=[AssetCheckSpec("complete", asset=keys.merged_dataset,
                                    description="row count equals the raw dataset's")],
        description="All merged shards in one Parquet dataset, plus the run report.",
    )
    def merged_dataset(context: AssetExecutionContext, s3: S3Resource, ledger: JobLedgerResource) -> MaterializeResult:
        client = s3.get_client()
        index = load_shard_index(spec, client)
        report = merge_dataset(spec, client, [s.key for s in index.shards])
        jobs = ledger.get_ledger().latest_by_shard(spec.name)
        tokens_in = sum(int(j.get("input_tokens", 0)) for j in jobs.values())
        tokens_out = sum(int(j.get("output_tokens", 0)) for j in jobs.values())
        return MaterializeResult(
            metadata={
                "rows": report["rows"], "succeeded": report["succeeded"], "failed": report["failed"],
                "errors": MetadataValue.json(report["errors"]), "input_tokens": tokens_in,
                "output_tokens": tokens_out, "uri": MetadataValue.path(report["uri"]),
                "jobs": _md_table([{"shard": k, "status": j["status"], "job_arn": j.get("job_arn", "")}
                                   for k, j in sorted(jobs.items())]),
            },
            check_results=[AssetCheckResult(
                check_name="complete", passed=report["rows"] == index.rows,
                metadata={"raw_rows": index.rows, "merged_rows": report["rows"]},
            )],
        )

    assets = [raw_dataset, jsonl_shards, batch_jobs, batch_job_outputs, merged_results, merged_dataset]
    return PipelineDefs(spec, keys, shards_def, assets, build_completion_sensor(spec, keys))
