"""``bedrock-assets status``: one screen per pipeline of where it stands, from its ledger and Bedrock alone.

It reads; it never writes. Each open job is asked of Bedrock (one paginated List, a Get for a job the
list does not show), so the screen is current even when no daemon or run is ticking, and it works from
any terminal and in cron: jobs by state with their age, records processed of the total, the rate and the
ETA, the deadline and the batch cutoff, what was spent and what is in flight at most, the jobs that
stalled, and what is queued and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.metrics import Backlog, read_backlog
from bedrock_assets.bedrock.orphans import Orphan, find_orphans
from bedrock_assets.bedrock.prices import usd
from bedrock_assets.deadline import DeadlineView, at, load_cutoff, stall_after, stalled_jobs
from bedrock_assets.durations import describe
from bedrock_assets.graph.job_completion import refreshed
from bedrock_assets.ledger import JobAttempt, JobLedger, latest_by_shard
from bedrock_assets.pipeline import Step
from bedrock_assets.progress import Pace
from bedrock_assets.shards import span

MAX_JOB_ROWS = 20  # the jobs table lists the ones not finished first, then the latest finished


@dataclass(frozen=True)
class Standing:
    """A pipeline's attempts as of now (refreshed from Bedrock), and what follows from them."""

    attempts: list[JobAttempt]
    latest: dict[str, JobAttempt]
    asked_bedrock: bool
    backlog: Backlog | None = None
    orphans: list[Orphan] = field(default_factory=list)


def standing(step: Step, ledger: JobLedger, refresh: bool = True) -> Standing:
    """The pipeline's attempts, each open job's state as Bedrock reports it now (nothing is written)."""
    attempts = ledger.attempts_of(step.name)
    latest = latest_by_shard(attempts)
    open_jobs = [a for a in latest.values() if a.job_arn and a.status.holds_slot]
    if not refresh:
        return Standing(attempts, latest, False)
    bedrock = step.bedrock
    client = bedrock.get_client()
    jobs = bedrock.recent_jobs(client)
    listed = {j.job_arn: j for j in jobs}
    for a in open_jobs:
        job = listed.get(a.job_arn or "") or bedrock.get_job(client, a.job_arn or "")
        latest[a.shard] = replace(a, **refreshed(a, job))
    backlog = None
    if bedrock.batch_metrics:
        backlog = read_backlog(bedrock.get_cloudwatch_client(), step.spec.model.id, datetime.now(UTC))
    return Standing(attempts, latest, True, backlog, find_orphans(step.spec.job_prefix, jobs, attempts))


def screen(step: Step, ledger: JobLedger, now: datetime, refresh: bool = True) -> list[str]:
    """The lines of one pipeline's status screen."""
    s = standing(step, ledger, refresh)
    spec = step.spec
    latest = list(s.latest.values())
    head = f"[{spec.name}] {now:%Y-%m-%d %H:%M:%S}Z" + ("" if s.asked_bedrock else " (from the ledger)")
    orphans = [f"  {o.line()} (bedrock-assets stop --orphans)" for o in s.orphans]
    if not latest:
        return [head, "  no job yet: materialize raw_dataset (dg launch, the UI, or bedrock-assets run)", *orphans]
    states = Counter(a.status.value for a in latest)
    pace = Pace.of(latest, now, step.price).with_backlog(s.backlog, s.attempts)
    total = sum(a.records for a in latest)
    processed = sum(a.counts.processed for a in latest)
    lines = [
        head,
        "  jobs: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())),
        f"  records processed {processed:,}/{total:,} ({processed / total if total else 0:.0%}); {pace.text()}",
    ]
    if s.backlog is not None:
        lines.append("  " + s.backlog.text())
    if spec.budget_usd is not None:
        lines.append(f"  budget_usd {usd(spec.budget_usd)}")
    if spec.deadline.active:
        lines.append("  " + DeadlineView.of(spec, s.attempts, latest, load_cutoff(step)).line(now))
    stalled = stalled_jobs(latest, now, stall_after(spec), s.backlog.moving if s.backlog else None)
    lines += [f"  STALLED {x.shard} {x.job_arn}: {x.reason}" for x in stalled]
    lines += orphans
    lines += _queued(latest)
    return lines + _jobs_table(latest, now)


def _queued(latest: list[JobAttempt]) -> list[str]:
    """What waits and why, one line per reason."""
    reasons: dict[str, list[str]] = {}
    for a in latest:
        if a.status is JobStatus.QUEUED:
            reasons.setdefault(a.message or "waiting for a free job slot", []).append(a.shard)
    return [f"  queued {len(keys)} shard(s) ({span(sorted(keys))}): {why}" for why, keys in reasons.items()]


def _age(a: JobAttempt, now: datetime) -> str:
    since = at(a.submitted_at) or at(a.queued_at) or at(a.created_at)
    if a.status.is_terminal and since is not None and (end := at(a.end_time)) is not None:
        return f"took {describe(end - since)}"
    return describe(now - since) if since is not None else "-"


def _jobs_table(latest: list[JobAttempt], now: datetime) -> list[str]:
    """The jobs, those not finished first (oldest first), then the latest finished ones."""
    running = sorted((a for a in latest if not a.status.is_terminal), key=lambda a: a.created_at or "")
    ended = sorted((a for a in latest if a.status.is_terminal), key=lambda a: a.end_time or "", reverse=True)
    shown = (running + ended)[:MAX_JOB_ROWS]
    rows = [
        f"  {a.shard:<10} {a.status.value:<18} {_age(a, now):>12} "
        f"{a.counts.processed:>9,}/{a.counts.total or a.records:<9,} {a.job_arn or a.job_name}"
        for a in shown
    ]
    more = len(latest) - len(shown)
    return [
        f"  {'shard':<10} {'status':<18} {'age':>12} {'processed':>19} job",
        *rows,
        *([f"  and {more} more"] if more else []),
    ]
