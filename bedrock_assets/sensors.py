"""The completion sensor: polls Bedrock, updates the ledger, requests runs for finished jobs.

One tick makes one paginated ListModelInvocationJobs call for all of a pipeline's jobs (plus a
bounded number of Get calls for jobs the list did not show), so the cost per job stays flat as the
number of shards grows. Polling is the source of truth; no event is needed for progress.
"""


import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bedrock_assets.bedrock import BedrockBatchResource, CallCounter, in_flight_count
from bedrock_assets.ledger import IN_FLIGHT, QUEUED, SUBMIT_FAILED, TERMINAL, JobLedger, JobLedgerResource
from bedrock_assets.spec import PipelineSpec

MAX_GETS_PER_TICK = 50
MAX_SHARDS_PER_RUN = 16  # finished shards read and merged in one run (a partition range)
COUNT_FIELDS = ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")


@dataclass(frozen=True)
class PipelineKeys:
    raw_dataset: AssetKey
    jsonl_shards: AssetKey
    batch_jobs: AssetKey
    batch_job_outputs: AssetKey
    merged_results: AssetKey
    merged_dataset: AssetKey

    @classmethod
    def for_pipeline(cls, name: str) -> "PipelineKeys":
        return cls(*(AssetKey([name, n]) for n in (
            "raw_dataset", "jsonl_shards", "batch_jobs", "batch_job_outputs", "merged_results", "merged_dataset")))


@dataclass
class Tick:
    """What one poll saw and decided."""

    changed: list[dict[str, Any]] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)  # terminal, outputs not yet requested
    to_submit: list[dict[str, Any]] = field(default_factory=list)  # queued shards that now have a slot
    open_jobs: int = 0
    queued: int = 0
    calls: CallCounter = field(default_factory=CallCounter)


def poll(spec: PipelineSpec, bedrock: BedrockBatchResource, ledger: JobLedger) -> Tick:
    """Refresh every open job of the pipeline from Bedrock and decide what to run next."""
    tick = Tick()
    latest = ledger.latest_by_shard(spec.name)
    open_items = [i for i in latest.values() if i.get("job_arn") and i["status"] in IN_FLIGHT]
    queued = [i for i in latest.values() if i["status"] == QUEUED]
    tick.open_jobs, tick.queued = len(open_items), len(queued)
    jobs: list[dict[str, Any]] = []
    if open_items or queued:
        client = bedrock.client()
        jobs = bedrock.recent_jobs(client, tick.calls)
        by_arn = {j["jobArn"]: j for j in jobs}
        for item in open_items[:]:
            job = by_arn.get(item["job_arn"])
            if job is None and tick.calls.calls.get("GetModelInvocationJob", 0) < MAX_GETS_PER_TICK:
                tick.calls.add("GetModelInvocationJob")
                job = client.get_model_invocation_job(jobIdentifier=item["job_arn"])
            if job is None:
                continue  # looked up on a later tick
            fields = {"status": job["status"], **{f: job.get(f, 0) for f in COUNT_FIELDS}}
            if job.get("message"):
                fields["message"] = job["message"]
            if job.get("endTime"):
                fields["end_time"] = job["endTime"].isoformat()
            if any(item.get(k) != v for k, v in fields.items()):
                ledger.update(spec.name, item["shard"], item["attempt"], **fields)
                item.update(fields)
                tick.changed.append(item)
        free = spec.quotas(bedrock.quota_overrides).max_concurrent_jobs - in_flight_count(jobs, spec.model.id)
        tick.to_submit = sorted(queued, key=lambda i: i["shard"])[: max(free, 0)]
    tick.finished = sorted(
        (i for i in latest.values()
         if (i["status"] in TERMINAL or i["status"] == SUBMIT_FAILED) and not i.get("outputs_requested")),
        key=lambda i: i["shard"],
    )
    return tick


def run_key_for_outputs(item: dict[str, Any]) -> str:
    return f"outputs:{item.get('job_arn') or item['job_name']}:{item['status']}"


def run_key_for_submit(item: dict[str, Any]) -> str:
    return f"submit:{item['job_name']}:{item.get('queued_at', '')}"


def contiguous_groups(items: list[dict[str, Any]], limit: int = MAX_SHARDS_PER_RUN) -> list[list[dict[str, Any]]]:
    """Finished shards in runs of consecutive partition keys (s00003..s00007), at most ``limit`` each."""
    groups: list[list[dict[str, Any]]] = []
    for item in sorted(items, key=lambda i: i["shard"]):
        last = groups[-1][-1] if groups else None
        if last and int(item["shard"][1:]) == int(last["shard"][1:]) + 1 and len(groups[-1]) < limit:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _outputs_request(keys: PipelineKeys, group: list[dict[str, Any]]) -> RunRequest:
    """One run reading the outputs of a group of finished jobs (a partition range when several)."""
    selection = [keys.batch_job_outputs, keys.merged_results]
    if len(group) == 1:
        return RunRequest(run_key=run_key_for_outputs(group[0]), partition_key=group[0]["shard"],
                          asset_selection=selection, tags={"bedrock-assets/job-status": group[0]["status"]})
    digest = hashlib.sha1("|".join(run_key_for_outputs(i) for i in group).encode()).hexdigest()[:12]
    first, last = group[0]["shard"], group[-1]["shard"]
    return RunRequest(
        run_key=f"outputs:{first}..{last}:{digest}", asset_selection=selection,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last,
              "bedrock-assets/job-status": ",".join(sorted({i["status"] for i in group}))},
    )


def tick_result(spec: PipelineSpec, keys: PipelineKeys, tick: Tick, ledger: JobLedger) -> SensorResult:
    """Observations for changed jobs; output runs for finished jobs; submit runs for freed slots."""
    observations = [
        AssetObservation(
            asset_key=keys.batch_jobs, partition=i["shard"],
            metadata={"status": i["status"], "job_arn": i["job_arn"], "attempt": i["attempt"],
                      **{f: int(i.get(f, 0)) for f in COUNT_FIELDS}},
        )
        for i in tick.changed
    ]
    requests = [_outputs_request(keys, group) for group in contiguous_groups(tick.finished)]
    for item in tick.finished:
        ledger.update(spec.name, item["shard"], item["attempt"], outputs_requested=True)
    for item in tick.to_submit:
        requests.append(RunRequest(run_key=run_key_for_submit(item), partition_key=item["shard"],
                                   asset_selection=[keys.batch_jobs]))
    summary = {"open": tick.open_jobs, "queued": tick.queued, "changed": len(tick.changed),
               "finished": len(tick.finished), "submitting": len(tick.to_submit), "calls": tick.calls.calls}
    return SensorResult(run_requests=requests, asset_events=observations, cursor=json.dumps(summary))


def build_completion_sensor(spec: PipelineSpec, keys: PipelineKeys, interval_seconds: int = 30) -> SensorDefinition:
    @sensor(
        name=f"{spec.name}__job_completion",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=[keys.batch_jobs, keys.batch_job_outputs, keys.merged_results],
        description=f"Polls Bedrock batch jobs of pipeline {spec.name!r}; requests output runs when they finish.",
    )
    def _completion(context: SensorEvaluationContext, bedrock: BedrockBatchResource, ledger: JobLedgerResource):
        job_ledger = ledger.get_ledger()
        tick = poll(spec, bedrock, job_ledger)
        result = tick_result(spec, keys, tick, job_ledger)
        context.log.info(f"{spec.name}: {result.cursor}")
        return result

    return _completion
