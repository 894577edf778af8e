"""A pipeline's deadline: the batch cutoff, what is stopped there, and the jobs that stalled.

Bedrock batch jobs promise no finishing time (a job may wait in Scheduled for most of its 24-168 h
timeout, then expire). A pipeline with ``deadline:`` keeps its date this way:

- its **deadline** is ``deadline.at``, or ``deadline.within`` after its first job was created (the
  ledger's earliest ``created_at``: recorded, so a restart computes the same time);
- its **batch cutoff** is the last moment from which everything not yet answered can still be
  answered on demand before the deadline minus ``deadline.margin``: ``deadline - margin - remaining /
  on-demand throughput``. The throughput is measured from the pipeline's own on-demand answers
  (records per second of wall time), or ``deadline.on_demand_records_per_minute``, or
  ``DEFAULT_RECORDS_PER_MINUTE_PER_CALL`` per ``retry.on_demand_concurrency`` call before anything
  was measured. The cutoff moves later as jobs process records, and once reached it is recorded
  (``deadline/_cutoff.json``) and holds;
- **after the cutoff**, nothing new goes to batch: queued shards are answered on demand, jobs not yet
  InProgress are stopped, and InProgress jobs whose projected end (their own processed-records rate)
  would leave too little time for the on-demand finish, or that stalled, are stopped; what a stopped
  job processed is merged as usual, and its other records (``StoppedAtCutoff``, retriable) are answered
  on demand by the next retry round (one round beyond ``retry.max_rounds`` if need be).

A job is **stalled** when it is InProgress and its processed count has not moved for ``stall_after``,
or it has waited Submitted/Validating/Scheduled that long.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from bedrock_assets.bedrock.cancel import stop_job
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import CANARY_SHARD, ON_DEMAND_ARN
from bedrock_assets.bedrock.resource import CallCounter
from bedrock_assets.durations import describe, parse_duration
from bedrock_assets.ledger import JobAttempt, JobLedger
from bedrock_assets.spec import PipelineSpec
from bedrock_assets.storage import get_json, is_missing, put_json

if TYPE_CHECKING:
    from bedrock_assets.pipeline import Step

# Before the pipeline has answered anything on demand: a call takes ~5 s (a few hundred output tokens of a
# mid-size model), so each concurrent call answers ~12 records a minute. Set deadline.on_demand_records_per_minute
# for a model much faster (embeddings) or slower (long answers) than that.
DEFAULT_RECORDS_PER_MINUTE_PER_CALL = 12.0
CUTOFF = "cutoff"  # JobAttempt.stopped_by of a job the deadline's cutoff stopped
WAITING = frozenset({JobStatus.SUBMITTED, JobStatus.VALIDATING, JobStatus.SCHEDULED})


def _stamp(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}Z"


def stopped_at_cutoff(a: JobAttempt) -> bool:
    """The job was stopped by the deadline's batch cutoff (its unprocessed records are answered on demand)."""
    return a.stopped_by == CUTOFF and a.status in (JobStatus.STOPPING, JobStatus.STOPPED)


def at(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


@dataclass(frozen=True)
class Throughput:
    """On-demand records per second, and whether the pipeline measured it (else it is the assumed one)."""

    per_second: float
    measured: bool

    @classmethod
    def of(cls, spec: PipelineSpec, attempts: Iterable[JobAttempt]) -> Throughput:
        answered = seconds = 0.0
        for a in attempts:
            start, end = at(a.started_at), at(a.end_time)
            # the canary's few calls go one at a time: no measure of what a bulk on-demand finish achieves
            on_demand = (a.job_arn or "").startswith(ON_DEMAND_ARN) and a.shard != CANARY_SHARD
            if on_demand and start and end and a.counts.processed:
                answered += a.counts.processed
                seconds += max((end - start).total_seconds(), 1.0)  # the ledger's times are to the second
        if answered:
            return cls(answered / seconds, True)
        per_minute = spec.deadline.on_demand_records_per_minute or (
            DEFAULT_RECORDS_PER_MINUTE_PER_CALL * spec.retry.on_demand_concurrency
        )
        return cls(per_minute / 60, False)

    def time_for(self, records: int) -> timedelta:
        return timedelta(seconds=records / self.per_second)

    def describe(self) -> str:
        return f"{self.per_second * 60:,.0f} records/min on demand ({'measured' if self.measured else 'assumed'})"


def unanswered(a: JobAttempt) -> int:
    """Records of an attempt that no job has processed yet (all of a queued shard's)."""
    if a.status in (JobStatus.QUEUED, JobStatus.SUBMITTING):
        return a.records
    if a.status.holds_slot and a.status is not JobStatus.STOPPING:
        return max((a.counts.total or a.records) - a.counts.processed, 0)
    return 0


def job_rate(a: JobAttempt, now: datetime) -> float:
    """Records a second an InProgress job has processed since it was first seen InProgress (0: none yet)."""
    start = at(a.started_at)
    if a.status is not JobStatus.IN_PROGRESS or start is None or not a.counts.processed:
        return 0.0
    return a.counts.processed / max((now - start).total_seconds(), 1.0)


def projected_end(a: JobAttempt, now: datetime) -> datetime | None:
    """When an InProgress job ends at its own rate so far (None: it has processed nothing to go by)."""
    rate = job_rate(a, now)
    return now + timedelta(seconds=unanswered(a) / rate) if rate else None


def stall_reason(
    a: JobAttempt, now: datetime, stall_after: timedelta, backlog_moving: bool | None = None
) -> str | None:
    """Why a job counts as stalled (None: it does not). A job waiting Submitted/Scheduled that long is not, while
    the model's account-wide batch queue is known to move (``backlog_moving``: CloudWatch's batch metrics)."""
    if a.status is JobStatus.IN_PROGRESS:
        since = at(a.progressed_at) or at(a.started_at)
        if since is not None and now - since >= stall_after:
            return (
                f"InProgress, {a.counts.processed}/{a.counts.total or a.records} records, none processed for "
                f"{describe(now - since)}"
            )
    elif a.status in WAITING and not backlog_moving:
        since = at(a.submitted_at)
        if since is not None and now - since >= stall_after:
            return f"{a.status.value} for {describe(now - since)}" + (
                " while the model's batch queue does not move" if backlog_moving is False else ""
            )
    return None


@dataclass(frozen=True)
class Stalled:
    shard: str
    job_arn: str
    reason: str


def stalled_jobs(
    latest: Iterable[JobAttempt], now: datetime, stall_after: timedelta, backlog_moving: bool | None = None
) -> list[Stalled]:
    return [
        Stalled(a.shard, a.job_arn or a.job_name, reason)
        for a in latest
        if (reason := stall_reason(a, now, stall_after, backlog_moving)) is not None
    ]


def deadline_of(spec: PipelineSpec, attempts: Iterable[JobAttempt]) -> datetime | None:
    """The pipeline's deadline (None: it has none, or ``within`` and no job yet to count from)."""
    d = spec.deadline
    if d.at is not None:
        return d.at
    if d.within_delta is None:
        return None
    created = [c for a in attempts if (c := at(a.created_at)) is not None]
    return min(created) + d.within_delta if created else None


@dataclass(frozen=True)
class CutoffRecord:
    """The moment a pipeline passed its batch cutoff, as recorded once (``deadline/_cutoff.json``)."""

    reached_at: str
    deadline: str
    cutoff: str
    remaining: int
    throughput: str


def load_cutoff(step: Step) -> CutoffRecord | None:
    try:
        return CutoffRecord(**get_json(step.s3, step.layout.cutoff))
    except ClientError as e:
        if is_missing(e):
            return None
        raise


def is_past_cutoff(step: Step) -> bool:
    """The pipeline has a deadline and passed its batch cutoff: from now on its new work goes on demand."""
    return step.spec.deadline.active and load_cutoff(step) is not None


def save_cutoff(step: Step, record: CutoffRecord) -> None:
    put_json(step.s3, step.layout.cutoff, asdict(record))


@dataclass(frozen=True)
class DeadlineView:
    """Where a pipeline stands against its deadline at one moment."""

    deadline: datetime | None
    margin: timedelta
    cutoff: datetime | None  # when the batch cutoff falls (as of now), or when it was reached
    remaining: int
    throughput: Throughput
    reached: CutoffRecord | None = None

    @classmethod
    def of(
        cls,
        spec: PipelineSpec,
        attempts: Sequence[JobAttempt],
        latest: Iterable[JobAttempt],
        reached: CutoffRecord | None = None,
    ) -> DeadlineView:
        deadline = deadline_of(spec, attempts)
        throughput = Throughput.of(spec, attempts)
        remaining = sum(unanswered(a) for a in latest)
        margin = spec.deadline.margin_delta
        if reached is not None:
            cutoff: datetime | None = datetime.fromisoformat(reached.reached_at)
        elif deadline is not None:
            cutoff = deadline - margin - throughput.time_for(remaining)
        else:
            cutoff = None
        return cls(deadline, margin, cutoff, remaining, throughput, reached)

    def due(self, now: datetime) -> bool:
        """The cutoff is reached now (and there is something left to finish on demand)."""
        return self.reached is None and self.cutoff is not None and self.remaining > 0 and now >= self.cutoff

    def record(self, now: datetime) -> CutoffRecord:
        assert self.deadline is not None and self.cutoff is not None
        return CutoffRecord(
            now.isoformat(timespec="seconds"),
            self.deadline.isoformat(timespec="seconds"),
            self.cutoff.isoformat(timespec="seconds"),
            self.remaining,
            self.throughput.describe(),
        )

    def line(self, now: datetime) -> str:
        """The deadline and the cutoff with their times (the status screen)."""
        if self.deadline is None:
            return "deadline: counted from the first job"
        left = f"{describe(self.deadline - now)} left" if self.deadline > now else "passed"
        head = f"deadline {_stamp(self.deadline)} ({left}); batch cutoff"
        if self.reached is not None:
            return f"{head} reached at {self.reached.reached_at}: the rest is answered on demand"
        cutoff = _stamp(self.cutoff) if self.cutoff else "-"
        return f"{head} {cutoff} ({self.throughput.describe()}, margin {describe(self.margin)})"

    def short(self, now: datetime) -> str:
        """``deadline in 2h05m, batch cutoff in 1h10m`` (for progress lines)."""
        if self.deadline is None:
            return "deadline counted from the first job"
        left = f"deadline in {describe(self.deadline - now)}" if self.deadline > now else "deadline passed"
        if self.reached is not None:
            return f"{left}, past the batch cutoff: the rest is answered on demand"
        if self.cutoff is None or self.remaining == 0:
            return left
        cutoff = f"batch cutoff in {describe(self.cutoff - now)}" if self.cutoff > now else "batch cutoff now"
        return f"{left}, {cutoff}"

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.deadline is not None:
            meta["deadline"] = self.deadline.isoformat(timespec="seconds")
        if self.cutoff is not None:
            meta["batch_cutoff"] = self.cutoff.isoformat(timespec="seconds")
        meta["cutoff_reached"] = self.reached is not None
        meta["on_demand_records_per_minute"] = round(self.throughput.per_second * 60, 2)
        return meta


@dataclass(frozen=True)
class CutoffActions:
    """What the cutoff does this tick: jobs to stop (with why) and queued shards to answer on demand."""

    stop: list[tuple[JobAttempt, str]] = field(default_factory=list)
    on_demand: list[str] = field(default_factory=list)


def cutoff_actions(
    latest: Iterable[JobAttempt],
    now: datetime,
    view: DeadlineView,
    stall_after: timedelta,
) -> CutoffActions:
    """After the cutoff: queued shards go on demand; jobs not yet InProgress, and InProgress ones that would end
    too late for the on-demand finish of what is stopped (or stalled), are stopped.

    The InProgress jobs are weighed latest projected end first: each stopped one adds its unanswered records to
    the on-demand finish and so moves the time a kept job must end by earlier."""
    latest = list(latest)
    queued = [a for a in latest if a.status is JobStatus.QUEUED]
    stop = [(a, f"{a.status.value} at the batch cutoff") for a in latest if a.status in WAITING and a.job_arn]
    running = [a for a in latest if a.status is JobStatus.IN_PROGRESS and a.job_arn]
    for a in running:
        if (why := stall_reason(a, now, stall_after)) is not None:
            stop.append((a, f"stalled ({why})"))
    stalled = {a.shard for a, _ in stop}
    going = sum(a.records for a in queued) + sum(unanswered(a) for a, _ in stop)
    ends = {a.shard: projected_end(a, now) for a in running}
    finish = (view.deadline or now) - view.margin
    never = datetime.max.replace(tzinfo=now.tzinfo)
    for a in sorted((a for a in running if a.shard not in stalled), key=lambda a: ends[a.shard] or never, reverse=True):
        end, must_end = ends[a.shard], finish - view.throughput.time_for(going + unanswered(a))
        if end is not None and end <= must_end:
            break  # it and every job projected to end earlier finish in batch in time
        stop.append((a, _too_late(end, must_end)))
        going += unanswered(a)
    return CutoffActions(stop, [a.shard for a in queued])


def _too_late(end: datetime | None, must_end: datetime) -> str:
    if end is None:
        return "InProgress with nothing processed yet to project its end by"
    return f"projected to end {end:%H:%M:%S}Z, after {must_end:%H:%M:%S}Z (the on-demand finish needs the rest)"


def deadline_line(pipeline: str, kept: DeadlineTick) -> str:
    """What the cutoff did this tick, for the sensor's log and the runner's lines."""
    record = kept.view.reached
    head = (
        f"[{pipeline}] batch cutoff reached at {record.reached_at} (deadline {record.deadline}, {record.remaining} "
        f"records unanswered, {record.throughput})"
        if record is not None and kept.newly_reached
        else f"[{pipeline}] past the batch cutoff"
    )
    stopped = "; ".join(f"{a.shard}: {why}" for a, why in kept.stopped[:5])
    more = f"; and {len(kept.stopped) - 5} more" if len(kept.stopped) > 5 else ""
    return (
        head
        + (f": stopped {len(kept.stopped)} job(s) ({stopped}{more})" if kept.stopped else "")
        + ("; queued shards are answered on demand")
    )


def stall_after(spec: PipelineSpec) -> timedelta:
    return parse_duration(spec.stall_after)


@dataclass(frozen=True)
class DeadlineTick:
    """What keeping the deadline did in one tick: where it stands, and the jobs it stopped."""

    view: DeadlineView
    stopped: list[tuple[JobAttempt, str]] = field(default_factory=list)
    newly_reached: bool = False

    @property
    def past_cutoff(self) -> bool:
        return self.view.reached is not None


def keep_deadline(
    step: Step,
    ledger: JobLedger,
    attempts: Sequence[JobAttempt],
    latest: dict[str, JobAttempt],
    now: datetime,
    counter: CallCounter | None = None,
) -> DeadlineTick | None:
    """Record the cutoff once it is reached, and from then on stop what cannot finish in batch in time
    (``latest`` is updated with the stopped attempts). None: the pipeline has no deadline."""
    spec = step.spec
    if not spec.deadline.active:
        return None
    reached = load_cutoff(step)
    view = DeadlineView.of(spec, attempts, latest.values(), reached)
    newly = view.due(now)
    if newly:
        reached = view.record(now)
        save_cutoff(step, reached)
        view = replace(view, reached=reached, cutoff=datetime.fromisoformat(reached.reached_at))
    if view.reached is None:
        return DeadlineTick(view)
    actions = cutoff_actions(latest.values(), now, view, stall_after(spec))
    stopped = []
    client = step.bedrock.get_client() if actions.stop else None
    for attempt, why in actions.stop:
        message = f"stopped at the deadline's batch cutoff: {why}; its unanswered records are answered on demand"
        updated = stop_job(client, ledger, attempt, message, counter, stopped_by=CUTOFF)
        if updated is not None:
            latest[attempt.shard] = updated
            stopped.append((updated, why))
    return DeadlineTick(view, stopped, newly)
