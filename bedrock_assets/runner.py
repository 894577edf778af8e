"""Headless runs: carry one pipeline to merged results with the same assets and sensor as the UI.

The steps a daemon would take are taken here in order: materialize raw_dataset, then the shard
inputs and job submissions over all shard partitions in one run, then evaluate the completion
sensor until every shard's job has finished and its outputs have been merged, executing each run
request it returns (deduplicated by run key, as the daemon does), then materialize merged_dataset.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    Definitions,
    RunRequest,
    SensorResult,
    build_sensor_context,
    materialize,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bedrock_assets.assets import PipelineDefs


# run logs stay in the instance (and the UI); the console shows this module's progress lines
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class PipelineRunError(RuntimeError):
    """A step failed or the pipeline did not finish in time."""


@dataclass
class RunSummary:
    pipeline: str
    rows: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    merged_uri: str = ""
    shards: int = 0
    job_statuses: dict[str, int] = field(default_factory=dict)
    runs_launched: int = 0
    sensor_ticks: int = 0
    bedrock_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def lines(self) -> list[str]:
        calls = sum(self.bedrock_calls.values())
        return [
            f"pipeline {self.pipeline}: {self.rows} rows -> {self.succeeded} succeeded, {self.failed} failed"
            + (f" {self.errors}" if self.errors else ""),
            f"  merged results: {self.merged_uri}",
            f"  shards: {self.shards}; jobs: {self.job_statuses}",
            f"  tokens: {self.input_tokens} in / {self.output_tokens} out",
            f"  {self.runs_launched} runs, {self.sensor_ticks} sensor ticks, {calls} Bedrock control-plane calls "
            f"{self.bedrock_calls}, {self.seconds:.1f} s",
        ]


def _merge_calls(total: dict[str, int], calls: dict[str, int] | None) -> None:
    for op, n in (calls or {}).items():
        total[op] = total.get(op, 0) + int(n)


def _root_message(event: Any) -> str:
    """The user-facing error of a failed step (its root cause, not Dagster's wrapper)."""
    error = event.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def execute_selection(
    pipeline: PipelineDefs, resources: dict, instance: DagsterInstance, selection: Sequence[AssetKey],
    partitions: Sequence[str] | None = None, tags: dict | None = None,
) -> Any:
    """One run of ``selection`` over a contiguous range of shard partitions; PipelineRunError on failure."""
    run_tags = dict(tags or {})
    if partitions:
        run_tags[ASSET_PARTITION_RANGE_START_TAG] = partitions[0]
        run_tags[ASSET_PARTITION_RANGE_END_TAG] = partitions[-1]
    result = materialize(pipeline.assets, selection=list(selection), resources=resources, instance=instance,
                         tags=run_tags, raise_on_error=False, run_config=QUIET)
    if not result.success:
        failures = [f"{e.step_key}: {_root_message(e)}" for e in result.all_events if e.is_step_failure]
        raise PipelineRunError(f"run {result.run_id} failed: " + ("; ".join(failures) or "see the run logs"))
    return result


def _requested_shards(request: RunRequest, shard_keys: list[str]) -> list[str]:
    """The shard partitions a run request covers: its partition key, or its partition range."""
    if request.partition_key:
        return [request.partition_key]
    first = shard_keys.index(request.tags[ASSET_PARTITION_RANGE_START_TAG])
    last = shard_keys.index(request.tags[ASSET_PARTITION_RANGE_END_TAG])
    return shard_keys[first : last + 1]


def _span(shards: list[str]) -> str:
    return f"shard {shards[0]}" if len(shards) == 1 else f"shards {shards[0]}..{shards[-1]}"


def _merged_already(instance: DagsterInstance, pipeline: PipelineDefs, ledger: Any) -> set[str]:
    """Shards whose latest merged_results materialization is for the ledger's current job.

    A rerun re-attaches to finished jobs; their outputs were requested (and merged) before, so the
    sensor will not request them again. Shards requested but never merged are merged here.
    """
    merged: set[str] = set()
    for shard, item in ledger.latest_by_shard(pipeline.spec.name).items():
        if not item.get("outputs_requested"):
            continue
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=pipeline.keys.merged_results, asset_partitions=[shard]), limit=1
        ).records
        meta = records[0].asset_materialization.metadata if records else {}
        if "job_arn" in meta and meta["job_arn"].value == (item.get("job_arn") or ""):
            merged.add(shard)
        else:
            ledger.update(pipeline.spec.name, shard, item["attempt"], outputs_requested=False)
    return merged


def run_pipeline(
    defs: Definitions,
    pipeline: PipelineDefs,
    instance: DagsterInstance,
    *,
    poll_seconds: float = 2.0,
    timeout_seconds: float = 3600.0,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Run one pipeline to completion; raises PipelineRunError on failure or timeout."""
    started = time.monotonic()
    keys = pipeline.keys
    summary = RunSummary(pipeline.spec.name)
    resources = defs.resources

    def execute(selection: Sequence[AssetKey], partitions: list[str] | None = None, tags: dict | None = None) -> Any:
        summary.runs_launched += 1
        result = execute_selection(pipeline, resources, instance, selection, partitions, tags)
        for event in result.get_asset_materialization_events():  # one per partition, same calls: count once
            mat = event.materialization
            if mat.asset_key == keys.batch_jobs and "bedrock_calls" in mat.metadata:
                _merge_calls(summary.bedrock_calls, mat.metadata["bedrock_calls"].value)
                break
        return result

    log(f"[{summary.pipeline}] materializing raw_dataset")
    execute([keys.raw_dataset])
    shard_keys = instance.get_dynamic_partitions(pipeline.partitions.name)
    summary.shards = len(shard_keys)
    log(f"[{summary.pipeline}] {len(shard_keys)} shards: writing inputs and submitting jobs")
    execute([keys.jsonl_shards, keys.batch_jobs], shard_keys)

    done = _merged_already(instance, pipeline, resources["ledger"].get_ledger())
    if done:
        log(f"[{summary.pipeline}] {len(done)} shard(s) already merged for their current job")
    seen_run_keys: set[str] = set()
    while len(done) < len(shard_keys):
        if time.monotonic() - started > timeout_seconds:
            raise PipelineRunError(f"timed out after {timeout_seconds:.0f} s with {len(done)}/{len(shard_keys)} "
                                   "shards merged")
        context = build_sensor_context(instance=instance, resources=resources, definitions=defs)
        result = pipeline.sensor(context)
        assert isinstance(result, SensorResult)
        summary.sensor_ticks += 1
        _merge_calls(summary.bedrock_calls, json.loads(result.cursor or "{}").get("calls"))
        for event in result.asset_events or []:
            instance.report_runless_asset_event(event)
        for request in result.run_requests or []:
            if request.run_key in seen_run_keys:
                continue
            seen_run_keys.add(request.run_key)
            shards = _requested_shards(request, shard_keys)
            execute(request.asset_selection or [], shards, request.tags)
            if keys.merged_results in (request.asset_selection or []):
                done.update(shards)
                log(f"[{summary.pipeline}] {_span(shards)}: {request.tags.get('bedrock-assets/job-status')}"
                    f" -> merged ({len(done)}/{len(shard_keys)})")
        if len(done) < len(shard_keys):
            time.sleep(poll_seconds)

    log(f"[{summary.pipeline}] all shards merged: materializing merged_dataset")
    final = execute([keys.merged_dataset])
    for event in final.get_asset_materialization_events():
        meta = event.materialization.metadata
        summary.rows = int(meta["rows"].value)
        summary.succeeded = int(meta["succeeded"].value)
        summary.failed = int(meta["failed"].value)
        summary.errors = dict(meta["errors"].value)
        summary.merged_uri = str(meta["uri"].value)
        summary.input_tokens = int(meta["input_tokens"].value)
        summary.output_tokens = int(meta["output_tokens"].value)
    failed_checks = [e for e in final.get_asset_check_evaluations() if not e.passed]
    if failed_checks:
        raise PipelineRunError(f"merged_dataset check failed: {failed_checks[0].metadata}")
    statuses: dict[str, int] = {}
    ledger = resources["ledger"].get_ledger()
    for item in ledger.latest_by_shard(summary.pipeline).values():
        statuses[item["status"]] = statuses.get(item["status"], 0) + 1
    summary.job_statuses = statuses
    summary.seconds = time.monotonic() - started
    return summary
