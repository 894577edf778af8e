"""Jobs of ours that no ledger item holds: orphans, reported with the money they put at risk, and stopped on
request.

A job whose name has the shape of this pipeline's job names (``naming.named_by``) but that the ledger does
not hold — another version of the spec, a renamed pipeline's leftovers, a manual test, a create whose answer
was lost and whose shard has since moved on — is billed like any job and would otherwise be invisible. A job
the ledger holds by name (a create in flight or being resolved) is not an orphan: the submission attaches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bedrock_assets.bedrock.cancel import request_stop
from bedrock_assets.bedrock.naming import named_by
from bedrock_assets.bedrock.prices import usd
from bedrock_assets.bedrock.resource import BedrockBatchResource, JobSummary
from bedrock_assets.ledger import JobAttempt, JobCounts


@dataclass(frozen=True)
class Orphan:
    job_arn: str
    job_name: str
    status: str
    counts: JobCounts
    at_risk_usd: float | None  # what its unprocessed records may still cost, at the pipeline's worst case per record

    @property
    def running(self) -> bool:
        return self.status in ("Submitted", "Validating", "Scheduled", "InProgress")

    def line(self) -> str:
        risk = f", up to {usd(self.at_risk_usd)} at risk" if self.running else ""
        return (
            f"ORPHAN {self.job_name} ({self.job_arn}): {self.status}, {self.counts.processed}/{self.counts.total} "
            f"records{risk}; no ledger item holds it"
        )

    def row(self) -> dict[str, Any]:
        return {
            "job_name": self.job_name,
            "job_arn": self.job_arn,
            "status": self.status,
            "records": f"{self.counts.processed}/{self.counts.total}",
            "at_risk": usd(self.at_risk_usd) if self.running else "-",
        }


def worst_per_record(attempts: Iterable[JobAttempt]) -> float | None:
    """The pipeline's worst case per record, from its priced attempts (None: none priced)."""
    priced = [a for a in attempts if a.worst_usd is not None and a.records]
    if not priced:
        return None
    return sum(a.worst_usd or 0.0 for a in priced) / sum(a.records for a in priced)


def find_orphans(prefix: str, jobs: Iterable[JobSummary], attempts: Sequence[JobAttempt]) -> list[Orphan]:
    """The listed jobs named like this pipeline's that its ledger does not hold."""
    held_arns = {a.job_arn for a in attempts if a.job_arn}
    held_names = {a.job_name for a in attempts}
    per_record = worst_per_record(attempts)
    orphans = []
    for job in jobs:
        if not named_by(prefix, job.job_name) or job.job_arn in held_arns or job.job_name in held_names:
            continue
        counts = JobCounts.from_job(job.counts)
        left = max(counts.total - counts.processed, 0)
        risk = per_record * left if per_record is not None and counts.total else None
        orphans.append(Orphan(job.job_arn, job.job_name, job.status.value, counts, risk))
    return sorted(orphans, key=lambda o: o.job_name)


def orphans_line(pipeline: str, orphans: Sequence[Orphan]) -> str:
    running = [o for o in orphans if o.running]
    risk = sum(o.at_risk_usd or 0.0 for o in running)
    return (
        f"[{pipeline}] {len(orphans)} job(s) named like this pipeline's that its ledger does not hold "
        f"({', '.join(o.job_name for o in orphans[:3])}{', …' if len(orphans) > 3 else ''}); {len(running)} running, "
        f"up to {usd(risk)} at risk: bedrock-assets stop --orphans stops them"
    )


def stop_orphans(bedrock: BedrockBatchResource, prefix: str, attempts: Sequence[JobAttempt]) -> list[Orphan]:
    """StopModelInvocationJob for every running orphan; the ones asked to stop (one that ended meanwhile is not)."""
    client = bedrock.get_client()
    stopped = []
    for orphan in find_orphans(prefix, bedrock.recent_jobs(client), attempts):
        if orphan.running and request_stop(client, orphan.job_arn):
            stopped.append(orphan)
    return stopped
