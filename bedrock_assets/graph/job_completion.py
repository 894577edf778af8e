"""The completion sensor's work: poll Bedrock, record job states, and say which runs come next.

One tick makes one paginated ListModelInvocationJobs call for all of a pipeline's jobs (plus a
bounded number of Get calls for jobs the list did not show), so the cost per job stays flat as the
number of shards grows. Polling is the source of truth; no event is needed for progress.

What a tick requests is decided by ``decide_tick`` from plain values: a shard whose job reached a
terminal state is merged unless the Dagster instance already holds a merge of that same job (its
latest ``merged_results`` materialization says so) or a merge run for it is in progress; a queued
shard is submitted when a slot frees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    MetadataValue,
    RunsFilter,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from bedrock_assets.bedrock.budget import Budget, held_by_budget
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter, JobSummary, slots_in_use
from bedrock_assets.bedrock.submission import resubmitted_automatically
from bedrock_assets.graph.merged_results import MERGED_JOB, RETRIABLE
from bedrock_assets.ledger import JobAttempt, JobCounts, JobLedger
from bedrock_assets.spec import PipelineSpec

MAX_GETS_PER_TICK = 50
CAPACITY_REFUSED = "ServiceQuotaExceededException"
MAX_SHARDS_PER_RUN = 16  # finished shards read and merged in one run (a partition range)
T = TypeVar("T")
IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class TickDecision:
    """What a tick asks for: merges of finished jobs (in contiguous groups) and submissions of queued shards."""

    merge_groups: list[list[JobAttempt]]
    submit: list[JobAttempt]


def contiguous_groups(
    items: Iterable[T], order: Sequence[str], key: Callable[[T], str], limit: int = MAX_SHARDS_PER_RUN
) -> list[list[T]]:
    """Items in runs of consecutive partition keys of ``order`` (by ``key``), at most ``limit`` each."""
    position = {k: i for i, k in enumerate(order)}
    groups: list[list[T]] = []
    for item in sorted(items, key=lambda i: position[key(i)]):
        last = groups[-1][-1] if groups else None
        if last is not None and position[key(item)] == position[key(last)] + 1 and len(groups[-1]) < limit:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def jobs_digest(shards: Sequence[str], latest: Mapping[str, JobAttempt]) -> str:
    """Which job attempt of every shard a merged dataset (or a retry round) was built from, as one short digest."""
    text = "|".join(f"{k}={latest[k].identity if k in latest else ''}" for k in shards)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def unmerged(shards: Sequence[str], latest: Mapping[str, JobAttempt], merged: Mapping[str, str]) -> list[str]:
    """Shards whose latest job attempt is not what their last merge holds (or that have no attempt yet)."""
    return [k for k in shards if k not in latest or merged.get(k) != latest[k].identity]


def decide_tick(
    latest: Mapping[str, JobAttempt],
    shards: Sequence[str],
    merged: Mapping[str, str],
    busy: set[str],
    free_slots: int,
    max_job_attempts: int = 1,
    budget: Budget | None = None,
) -> TickDecision:
    """Which shards to merge and which to submit (queued ones, and jobs the resubmission policy renews).

    ``latest``: each shard's latest attempt (after refreshing from Bedrock); ``shards``: the current
    shard partitions in order; ``merged``: shard -> the attempt identity its latest merge holds;
    ``busy``: shards a run is already working on; ``free_slots``: the model's unused job slots.
    """
    current = [latest[s] for s in shards if s in latest and s not in busy]
    not_merged = set(unmerged(shards, latest, merged))
    renewed = [  # the resubmission policy: never for a shard already merged (its records went on to retry rounds)
        a
        for a in current
        if a.status.is_terminal and a.shard in not_merged and resubmitted_automatically(a, max_job_attempts)
    ]
    to_merge = [a for a in current if a.status.is_terminal and a.shard in not_merged and a not in renewed]
    queued = [a for a in current if a.status is JobStatus.QUEUED] + renewed
    if budget is not None:  # a shard the budget holds is submitted only once it fits (raised budget)
        fitting = []
        for a in queued:
            if not held_by_budget(a):
                fitting.append(a)
            elif budget.fits(a.worst_usd):
                fitting.append(a)
                budget = budget.after(a.worst_usd or 0.0)
        queued = fitting
    slots = max(free_slots, 0)
    if service_refused_since_last_success(latest.values()):
        slots = min(slots, 1)  # the live quota is below ours: probe with one shard until a slot is proven free
    return TickDecision(contiguous_groups(to_merge, shards, shard_of), queued[:slots])


def service_refused_since_last_success(attempts: Iterable[JobAttempt]) -> bool:
    """Bedrock refused a create for capacity (ServiceQuotaExceeded) after our last successful one."""
    refused = [
        a.queued_at or ""
        for a in attempts
        if a.status is JobStatus.QUEUED and (a.message or "").startswith(CAPACITY_REFUSED)
    ]
    created = [a.submitted_at or "" for a in attempts if a.submitted_at]
    return bool(refused) and max(refused) >= max(created, default="")


def shard_of(attempt: JobAttempt) -> str:
    return attempt.shard


@dataclass
class Poll:
    """Job states after a tick's Bedrock calls, and the attempts whose state changed."""

    latest: dict[str, JobAttempt]
    changed: list[JobAttempt] = field(default_factory=list)
    free_slots: int = 0
    calls: CallCounter = field(default_factory=CallCounter)


def refreshed(attempt: JobAttempt, job: JobSummary) -> dict:
    """The ledger fields that differ between an attempt and what Bedrock now says of its job."""
    fields = {"status": job.status, "counts": JobCounts.from_job(job.counts)}
    if job.message:
        fields["message"] = job.message
    if job.end_time:
        fields["end_time"] = job.end_time
    return {k: v for k, v in fields.items() if getattr(attempt, k) != v}


def poll(spec: PipelineSpec, bedrock: BedrockBatchResource, ledger: JobLedger) -> Poll:
    """Refresh every open job of the pipeline from Bedrock and record changes in the ledger."""
    result = Poll(latest=ledger.latest_by_shard(spec.name))
    open_attempts = [a for a in result.latest.values() if a.job_arn and a.status.holds_slot]
    queued = any(a.status is JobStatus.QUEUED for a in result.latest.values())
    if not open_attempts and not queued:
        return result
    client = bedrock.get_client()
    jobs = bedrock.recent_jobs(client, result.calls)
    by_arn = {j.job_arn: j for j in jobs}
    gets = 0
    for attempt in open_attempts:
        job = by_arn.get(attempt.job_arn or "")
        if job is None and gets < MAX_GETS_PER_TICK:  # older than the list window, or not listed yet
            gets += 1
            job = bedrock.get_job(client, attempt.job_arn or "", result.calls)
        changes = refreshed(attempt, job) if job is not None else {}
        if changes:
            updated = ledger.update(attempt, **changes)
            result.latest[attempt.shard] = updated
            result.changed.append(updated)
    result.free_slots = spec.quotas(bedrock.quota_overrides).max_concurrent_jobs - slots_in_use(jobs, spec.model.id)
    return result


@dataclass(frozen=True)
class PipelineStatus:
    """A pipeline at a glance: its shards' jobs by state, records processed, shards merged, what waits and why."""

    jobs: dict[str, int]
    records: int
    processed: int
    shards: int
    merged: int
    queued_because: str | None = None

    @classmethod
    def of(cls, shards: Sequence[str], latest: Mapping[str, JobAttempt], merged: Mapping[str, str]) -> PipelineStatus:
        attempts = [latest[k] for k in shards if k in latest]
        jobs: dict[str, int] = {}
        for a in attempts:
            jobs[a.status.value] = jobs.get(a.status.value, 0) + 1
        queued = [a.message for a in attempts if a.status is JobStatus.QUEUED and a.message]
        return cls(
            jobs=jobs,
            records=sum(a.records for a in attempts),
            processed=sum(a.counts.processed for a in attempts),
            shards=len(shards),
            merged=len(shards) - len(unmerged(shards, latest, merged)),
            queued_because=queued[0] if queued else None,
        )

    @property
    def all_merged(self) -> bool:
        return self.shards > 0 and self.merged == self.shards

    def line(self, pipeline: str) -> str:
        jobs = ", ".join(f"{n} {s}" for s, n in sorted(self.jobs.items())) or "none yet"
        why = f"; queued: {self.queued_because}" if self.queued_because else ""
        return (
            f"[{pipeline}] jobs: {jobs}; records processed {self.processed}/{self.records}; "
            f"merged {self.merged}/{self.shards} shards{why}"
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "jobs_by_status": MetadataValue.json(self.jobs),
            "records_processed": self.processed,
            "records_total": self.records,
            "shards_merged": self.merged,
            "shards": self.shards,
            **({"queued_because": MetadataValue.text(self.queued_because)} if self.queued_because else {}),
        }


# ---- what the Dagster instance knows ---------------------------------------------------------


@dataclass(frozen=True)
class MergedMark:
    """What a shard's latest merged_results materialization says: the job attempt it merged, and how
    many of its rows carry a retriable error."""

    job: str
    retriable: int = 0


def latest_merges(instance: DagsterInstance, merged_results: AssetKey) -> dict[str, MergedMark]:
    """Shard -> its latest merged_results materialization's mark (two queries)."""
    ids = instance.get_latest_storage_id_by_partition(merged_results, DagsterEventType.ASSET_MATERIALIZATION)
    if not ids:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=merged_results, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    marks = {}
    for record in records:
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        if record.partition_key and MERGED_JOB in meta:
            retriable = meta[RETRIABLE].value if RETRIABLE in meta else 0
            marks[record.partition_key] = MergedMark(str(meta[MERGED_JOB].value), int(retriable or 0))
    return marks


def run_partitions(tags: Mapping[str, str], order: Sequence[str]) -> list[str]:
    """The shard partitions a run (or run request) covers: its partition, or its partition range."""
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    first, last = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if first in order and last in order:
        return list(order[order.index(first) : order.index(last) + 1])
    return []


def busy_shards(instance: DagsterInstance, job_names: Sequence[str], order: Sequence[str]) -> set[str]:
    """Shards that a queued or running run of these jobs already covers."""
    busy: set[str] = set()
    for job_name in job_names:
        for run in instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_PROGRESS)):
            busy.update(run_partitions(run.tags, order))
    return busy


def span(shards: Sequence[str]) -> str:
    if not shards:
        return ""
    return shards[0] if len(shards) == 1 else f"{shards[0]}..{shards[-1]}"


def merge_run_key(group: Sequence[JobAttempt]) -> str:
    """Stable while the group's jobs are the same: the daemon launches each group's merge once."""
    digest = hashlib.sha1("|".join(a.identity for a in group).encode()).hexdigest()[:12]
    return f"merge:{span([a.shard for a in group])}:{digest}"


def submit_run_key(group: Sequence[JobAttempt]) -> str:
    """New whenever the group's shards were queued again: each wait for a slot gets its one submission."""
    digest = hashlib.sha1("|".join(f"{a.job_name}@{a.queued_at or ''}" for a in group).encode()).hexdigest()[:12]
    return f"submit:{span([a.shard for a in group])}:{digest}"
