"""The completion sensor's work: poll Bedrock, record job states, and say which runs come next.

The sensor ticks every COMPLETION_INTERVAL_SECONDS, so what Dagster finished (a merge run, a retry
round) is followed by the next stage within seconds; it asks Bedrock for job states at most every
``poll_seconds`` of the bedrock resource (30 s by default), with one paginated ListModelInvocationJobs
call for all of a pipeline's jobs (plus a bounded number of Get calls for jobs the list did not show),
so the cost per job stays flat as the number of shards grows. Polling is the source of truth; no event
is needed for progress.

What a tick requests is decided by ``decide_tick`` from plain values: a shard whose job reached a
terminal state is merged unless the Dagster instance already holds a merge of that same job (its
latest ``merged_results`` materialization says so) or a merge run for it is in progress; a queued
shard is submitted when a slot frees.
"""

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import dagster as dg
from dagster_aws.s3 import S3Resource

from bedrock_assets.bedrock.budget import Budget, held_by_budget
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.metrics import Backlog, read_backlog
from bedrock_assets.bedrock.orphans import Orphan, find_orphans, orphans_line
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter, JobSummary, slots_in_use
from bedrock_assets.bedrock.submission import claim_is_stale, resubmitted_automatically
from bedrock_assets.deadline import DeadlineTick, deadline_line, keep_deadline, stall_after, stalled_jobs
from bedrock_assets.graph.batch_jobs import progress_check
from bedrock_assets.keys import TAG_JOB_STATUS, TAG_RENEW, partition_tags, stage_tags
from bedrock_assets.ledger import JobAttempt, JobCounts, JobLedger, JobLedgerResource, latest_by_shard, now_iso
from bedrock_assets.metadata import table
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.progress import (
    MergedMark,
    PipelineStatus,
    RoundProgress,
    RunHolds,
    jobs_digest,
    latest_merges,
    merged_jobs,
    retry_due,
    run_holds,
    unmerged,
)
from bedrock_assets.report import JOBS_DIGEST
from bedrock_assets.shards import load_retry_state, span

COMPLETION_INTERVAL_SECONDS = 10
MAX_GETS_PER_TICK = 50
CAPACITY_REFUSED = "ServiceQuotaExceededException"
PROBE_AFTER = timedelta(seconds=60)  # after a capacity refusal, the longest wait before one create is tried
MAX_SHARDS_PER_RUN = 16  # finished shards read and merged in one run (a partition range)
T = TypeVar("T")


def build(p: Pipeline, jobs: Mapping[str, Any]) -> dg.SensorDefinition:
    """The completion sensor, which requests runs of the stage jobs ``submit``, ``merge``, ``retry`` and
    ``publish`` (the daemon refuses a tick that requests a job not listed here)."""

    @dg.sensor(
        name=p.keys.completion_sensor,
        minimum_interval_seconds=COMPLETION_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[jobs[stage] for stage in ("submit", "merge", "retry", "publish")],
        description=f"Polls the Bedrock batch jobs of {p.name!r}: merges finished ones, submits queued shards "
        "when a slot frees.",
    )
    def job_completion(
        context: dg.SensorEvaluationContext,
        s3: S3Resource,
        bedrock: BedrockBatchResource,
        bedrock_ledger: JobLedgerResource,
    ) -> dg.SensorResult:
        step = p.step(s3, bedrock)
        return completion_tick(step, bedrock_ledger.get_ledger(), context.instance, context.cursor, context.log)

    return job_completion


@dataclass(frozen=True)
class TickCursor:
    """What a tick leaves for the next: the status it last recorded, the Bedrock calls made since
    (recorded with the next status observation), and when Bedrock was last asked for job states."""

    status: str = ""
    unreported_calls: dict[str, int] = field(default_factory=dict)
    polled_at: float = 0.0  # epoch seconds
    stalled: list[str] = field(default_factory=list)  # the shards whose job the job_progress check last named
    backlog_moving: bool | None = None  # the model's batch queue at the last read of its metrics
    orphans: list[str] = field(default_factory=list)  # the orphan jobs (ARNs) the last observation named

    @classmethod
    def parse(cls, cursor: str | None) -> "TickCursor | None":
        if not cursor:
            return None
        data = json.loads(cursor)
        return cls(
            str(data.get("status", "")),
            dict(data.get("unreported_calls", {})),
            float(data.get("polled_at", 0.0)),
            list(data.get("stalled", [])),
            data.get("backlog_moving"),
            list(data.get("orphans", [])),
        )

    def poll_due(self, poll_seconds: float, now: float) -> bool:
        """Whether this tick asks Bedrock (a tick in between acts on the ledger and the instance alone). Ticks
        spaced by the interval itself arrive a little early or late: a tenth of it (at most 1 s) early is due."""
        return now - self.polled_at >= poll_seconds - min(1.0, poll_seconds / 10)

    def dump(self) -> str:
        return json.dumps(asdict(self))


def completion_tick(
    step: Step, ledger: JobLedger, instance: dg.DagsterInstance, cursor: str | None, log: Any = None
) -> dg.SensorResult:
    """One tick of the completion sensor: poll, record, and request merge, submit and retry-round runs."""
    keys = step.keys
    shards = instance.get_dynamic_partitions(keys.partitions)
    previous, now = TickCursor.parse(cursor), time.time()
    polled = poll(step, ledger, refresh=previous is None or previous.poll_due(step.bedrock.poll_seconds, now))
    kept = keep_deadline(step, ledger, polled.attempts, polled.latest, datetime.fromtimestamp(now, UTC), polled.calls)
    polled.changed += [a for a, _ in kept.stopped] if kept is not None else []
    holds = run_holds(instance, [keys.job("merge"), keys.job("submit")], shards)
    marks = latest_merges(instance, keys.merged_results)
    merged = merged_jobs(marks)
    stale = frozenset(a.shard for a in polled.latest.values() if claim_is_stale(a))
    decision = decide_tick(
        polled.latest,
        shards,
        merged,
        holds.busy,
        polled.free_slots,
        _max_job_attempts(step, polled),
        _budget(step, polled),
        stale,
        on_demand_now=kept is not None and kept.past_cutoff,
    )
    requests = _stage_requests(step, decision, shards, holds)
    status = PipelineStatus.of(shards, polled.latest, merged, step.price, datetime.fromtimestamp(now, UTC))
    if status.pace is not None and polled.backlog is not None:
        status = replace(status, pace=status.pace.with_backlog(polled.backlog, polled.attempts))
    requests += _next_step(step, instance, shards, polled.latest, marks, status, kept)
    if log is not None:
        log.debug(status.line(step.name))
        if kept is not None and (kept.newly_reached or kept.stopped):
            log.info(deadline_line(step.name, kept))
    if log is not None and polled.orphans and [o.job_arn for o in polled.orphans] != (previous or TickCursor()).orphans:
        log.warning(orphans_line(step.name, polled.orphans))
    events, next_cursor = _observations(step, polled, status, previous, kept)
    next_cursor = replace(next_cursor, polled_at=now if polled.refreshed else previous.polled_at if previous else 0.0)
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=next_cursor.dump())


def _next_step(
    step: Step,
    instance: dg.DagsterInstance,
    shards: Sequence[str],
    latest: Mapping[str, JobAttempt],
    marks: Mapping[str, MergedMark],
    status: PipelineStatus,
    kept: DeadlineTick | None = None,
) -> list[dg.RunRequest]:
    """Once every shard is merged: the next retry round if one is due, else merged_dataset if it was not built
    from these jobs yet (each once per set of jobs: the run key)."""
    if not status.all_merged:
        return []
    keys = step.keys
    if retry_due(step, progress := RoundProgress.of(shards, latest, marks), kept is not None and kept.past_cutoff):
        run_key, stage = f"retry:r{progress.round + 1}:{progress.basis}", "retry"
    else:
        digest = jobs_digest(shards, latest)
        record = instance.get_latest_materialization_event(keys.merged_dataset)
        built = record.asset_materialization.metadata if record and record.asset_materialization else {}
        if JOBS_DIGEST in built and built[JOBS_DIGEST].value == digest:
            return []
        run_key, stage = f"publish:{digest}", "publish"
    return [dg.RunRequest(run_key=run_key, job_name=keys.job(stage), tags=stage_tags(step.name, stage))]


def _budget(step: Step, polled: "Poll") -> Budget | None:
    if step.spec.budget_usd is None:
        return None
    return Budget.of(step.spec.budget_usd, polled.latest.values(), step.price)


def _max_job_attempts(step: Step, polled: "Poll") -> int:
    """The resubmission policy's cap; after a person stopped the pipeline, 1: no job is renewed (one small
    read, only when a job could be)."""
    cap = step.spec.retry.max_job_attempts
    renewable = any(a.status.is_terminal and resubmitted_automatically(a, cap) for a in polled.latest.values())
    return 1 if renewable and load_retry_state(step).stopped_at is not None else cap


def _stage_requests(
    step: Step, decision: "TickDecision", shards: Sequence[str], holds: RunHolds
) -> list[dg.RunRequest]:
    """Merge runs for finished jobs and submit runs for queued shards, each over consecutive shards."""
    merges = [
        _range_request(
            step,
            "merge",
            group,
            merge_run_key(group, holds.lost_in([a.shard for a in group])),
            {TAG_JOB_STATUS: ",".join(sorted({a.status.value for a in group}))},
        )
        for group in decision.merge_groups
    ]
    submits = [
        _range_request(
            step, "submit", group, submit_run_key(group, holds.lost_in([a.shard for a in group])), {TAG_RENEW: "true"}
        )
        for group in contiguous_groups(decision.submit, shards, shard_of)
    ]
    return merges + submits


def _range_request(
    step: Step, stage: str, group: Sequence[JobAttempt], run_key: str, tags: Mapping[str, str]
) -> dg.RunRequest:
    """A run of a stage job over one shard or a range of consecutive shards."""
    names = [a.shard for a in group]
    return dg.RunRequest(
        run_key=run_key,
        job_name=step.keys.job(stage),
        partition_key=names[0] if len(names) == 1 else None,
        tags={**stage_tags(step.name, stage, names), **partition_tags(names), **tags},
    )


def _observations(
    step: Step, polled: "Poll", status: PipelineStatus, previous: TickCursor | None, kept: DeadlineTick | None = None
) -> tuple[list[Any], TickCursor]:
    """Each changed job on batch_jobs; the pipeline at a glance on merged_dataset when it changed, with the
    Bedrock calls made since the last one (and where it stands against its deadline); the job_progress check
    whenever the set of stalled jobs changed."""
    keys = step.keys
    events: list[Any] = [job_observation(keys.batch_jobs, a) for a in polled.changed]
    moving = polled.backlog.moving if polled.backlog is not None else previous.backlog_moving if previous else None
    stalled = stalled_jobs(polled.latest.values(), _now(), stall_after(step.spec), moving)
    named = sorted(s.shard for s in stalled)
    if named != (previous.stalled if previous is not None else []):  # when the set of stalled jobs changes
        events.append(progress_check(keys.batch_jobs, stalled, kept is not None))
    calls = CallCounter(dict(previous.unreported_calls) if previous else {})
    calls.merge(polled.calls.calls)
    line = status.line(step.name)
    orphans = (
        [o.job_arn for o in polled.orphans] if polled.orphans is not None else previous.orphans if previous else []
    )
    seen = previous.orphans if previous is not None else []
    quiet = previous is not None and previous.status == line and orphans == seen
    if quiet and not (kept and (kept.stopped or kept.newly_reached)):
        return events, TickCursor(line, calls.calls, stalled=named, backlog_moving=moving, orphans=orphans)
    deadline = kept.view.metadata() if kept is not None else {}
    backlog = polled.backlog.metadata() if polled.backlog is not None else {}
    events.append(
        dg.AssetObservation(
            keys.merged_dataset,
            metadata={
                **status.metadata(),
                **deadline,
                **backlog,
                **orphan_metadata(polled.orphans),
                **calls.metadata(),
            },
        )
    )
    return events, TickCursor(line, stalled=named, backlog_moving=moving, orphans=orphans)


def orphan_metadata(orphans: list[Orphan] | None) -> dict[str, Any]:
    """The orphan jobs on the status observation (when the tick listed the jobs)."""
    if orphans is None:
        return {}
    risk = sum(o.at_risk_usd or 0.0 for o in orphans if o.running)
    return {
        "orphan_jobs": len(orphans),
        **({"orphans": table([o.row() for o in orphans]), "orphans_at_risk_usd": round(risk, 10)} if orphans else {}),
    }


def _now() -> datetime:
    return datetime.now(UTC)


def job_observation(asset: dg.AssetKey, a: JobAttempt) -> dg.AssetObservation:
    """A job's state on its batch_jobs partition."""
    return dg.AssetObservation(
        asset,
        partition=a.shard,
        metadata={
            "status": a.status.value,
            "job_arn": a.job_arn or "",
            "attempt": a.attempt,
            "records_total": a.counts.total,
            "records_processed": a.counts.processed,
            "records_succeeded": a.counts.succeeded,
            "records_errored": a.counts.errored,
            **({"message": dg.MetadataValue.text(a.message)} if a.message else {}),
        },
    )


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


def decide_tick(
    latest: Mapping[str, JobAttempt],
    shards: Sequence[str],
    merged: Mapping[str, str],
    busy: Set[str],
    free_slots: int,
    max_job_attempts: int = 1,
    budget: Budget | None = None,
    stale_claims: frozenset[str] = frozenset(),
    now: datetime | None = None,
    on_demand_now: bool = False,
) -> TickDecision:
    """Which shards to merge and which to submit (queued ones, jobs the resubmission policy renews, and
    claims whose submitter is gone).

    ``latest``: each shard's latest attempt (after refreshing from Bedrock); ``shards``: the current
    shard partitions in order; ``merged``: shard -> the attempt identity its latest merge holds;
    ``busy``: shards a run is already working on; ``free_slots``: the model's unused job slots;
    ``stale_claims``: shards left Submitting by a submitter that is gone (``claim_is_stale``). Those are
    submitted whatever the slots: the submission attaches the job their create made, or queues them.
    ``now``: the time ``probe_slots`` measures its wait against; ``on_demand_now``: past a deadline's batch
    cutoff every queued shard is answered on demand, so none waits for a slot.
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
    slots = len(queued) if on_demand_now else probe_slots(latest.values(), max(free_slots, 0), now)
    resolve = [a for a in current if a.shard in stale_claims]
    return TickDecision(contiguous_groups(to_merge, shards, shard_of), resolve + queued[:slots])


def probe_slots(attempts: Iterable[JobAttempt], slots: int, now: datetime | None = None) -> int:
    """The creates to try now. After Bedrock refused one for capacity (ServiceQuotaExceeded, after our last
    successful create), the live quota is below ours: no create until a slot may have come free, i.e. one of
    our jobs ended since the refusal, or PROBE_AFTER passed (another account's job may have ended); then one,
    a probe. So a full quota costs one refused create per job that ends, or per PROBE_AFTER, not one per tick."""
    attempts = list(attempts)
    refused = [
        a.queued_at or ""
        for a in attempts
        if a.status is JobStatus.QUEUED and (a.message or "").startswith(CAPACITY_REFUSED)
    ]
    created = [a.submitted_at or "" for a in attempts if a.submitted_at]
    if not refused or max(refused) < max(created, default=""):
        return slots
    refused_at = datetime.fromisoformat(max(refused))
    freed = any(a.end_time and datetime.fromisoformat(a.end_time) > refused_at for a in attempts)
    waited = (now or datetime.now(UTC)) - refused_at >= PROBE_AFTER
    return min(slots, 1) if freed or waited else 0


def shard_of(attempt: JobAttempt) -> str:
    return attempt.shard


@dataclass
class Poll:
    """Job states after a tick's Bedrock calls, and the attempts whose state changed."""

    latest: dict[str, JobAttempt]
    attempts: list[JobAttempt] = field(default_factory=list)  # every attempt, as the ledger held them
    changed: list[JobAttempt] = field(default_factory=list)
    free_slots: int = 0
    calls: CallCounter = field(default_factory=CallCounter)
    refreshed: bool = False  # whether Bedrock was asked (else the ledger's states, and no free slot known)
    backlog: Backlog | None = None  # the model's account-wide batch metrics, read with the refresh
    orphans: list[Orphan] | None = None  # jobs named like ours that the ledger does not hold (None: not listed)


def refreshed(attempt: JobAttempt, job: JobSummary, now: str | None = None) -> dict[str, Any]:
    """The ledger fields that differ between an attempt and what Bedrock now says of its job; with them, when
    it was first seen InProgress and when its processed count last moved (rates, ETAs and stalls)."""
    fields: dict[str, Any] = {"status": job.status, "counts": JobCounts.from_job(job.counts)}
    if job.message and attempt.stopped_by is None:  # a job we stopped keeps our reason, not "Stop requested by user."
        fields["message"] = job.message
    if job.end_time:
        fields["end_time"] = job.end_time
    changes = {k: v for k, v in fields.items() if getattr(attempt, k) != v}
    now = now or now_iso()
    if job.status is JobStatus.IN_PROGRESS and attempt.started_at is None:
        changes |= {"started_at": now, "progressed_at": now}
    elif "counts" in changes and changes["counts"].processed != attempt.counts.processed:
        changes["progressed_at"] = now
    return changes


def poll(step: Step, ledger: JobLedger, refresh: bool = True) -> Poll:
    """The pipeline's attempts from the ledger; with ``refresh``, every open job refreshed from Bedrock and
    the changes recorded in the ledger, the jobs named like ours that it does not hold (orphans) and, while work
    is open, the model's batch backlog (without, no slot counts as free: queued shards wait for a refresh)."""
    bedrock = step.bedrock
    attempts = ledger.current_attempts(step.name)  # what changed since the last tick, after the first
    result = Poll(latest=latest_by_shard(attempts), attempts=attempts)
    open_attempts = [a for a in result.latest.values() if a.job_arn and a.status.holds_slot]
    queued = any(a.status is JobStatus.QUEUED for a in result.latest.values())
    if not refresh or not attempts:  # a finished pipeline still lists its jobs (once a poll): orphans show
        return result
    result.refreshed = True
    now = now_iso()
    client = bedrock.get_client()
    jobs = bedrock.recent_jobs(client, result.calls)
    by_arn = {j.job_arn: j for j in jobs}
    gets, changes = 0, []
    for attempt in open_attempts:
        job = by_arn.get(attempt.job_arn or "")
        if job is None and gets < MAX_GETS_PER_TICK:  # older than the list window, or not listed yet
            gets += 1
            job = bedrock.get_job(client, attempt.job_arn or "", result.calls)
        if job is not None and (fields := refreshed(attempt, job, now)):
            changes.append((attempt, fields))
    for updated in ledger.update_each(changes):
        result.latest[updated.shard] = updated
        result.changed.append(updated)
    result.free_slots = step.quotas.max_concurrent_jobs - slots_in_use(jobs, step.spec.model.id)
    result.orphans = find_orphans(step.spec.job_prefix, jobs, attempts)
    if bedrock.batch_metrics and (open_attempts or queued):
        result.backlog = read_backlog(bedrock.get_cloudwatch_client(), step.spec.model.id, datetime.now(UTC))
    return result


def merge_run_key(group: Sequence[JobAttempt], lost: int = 0) -> str:
    """Stable while the group's jobs are the same: the daemon launches each group's merge once (once more for
    each run of its shards that died with its process: ``lost``)."""
    digest = hashlib.sha1("|".join(a.identity for a in group).encode()).hexdigest()[:12]
    return f"merge:{span([a.shard for a in group])}:{digest}" + (f":lost{lost}" if lost else "")


def submit_run_key(group: Sequence[JobAttempt], lost: int = 0) -> str:
    """New whenever the group's shards were queued again, or their claim went stale: each wait for a slot,
    and each claim to resolve, gets its one submission."""
    marks = "|".join(f"{a.job_name}@{a.queued_at or ''}@{a.updated_at if a.claimed_by else ''}" for a in group)
    key = f"submit:{span([a.shard for a in group])}:{hashlib.sha1(marks.encode()).hexdigest()[:12]}"
    return key + (f":lost{lost}" if lost else "")
