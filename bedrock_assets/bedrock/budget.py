"""A pipeline's budget: a shard's job is created only while the worst case of everything submitted fits.

What is spent is the bill of finished jobs (by the tokens their output reports); what is committed
is the worst case (every record at ``max_tokens``) of jobs still running or not read yet. A shard
that does not fit waits in the ledger with a message naming the budget, what is spent, committed
and left; raising ``budget_usd`` releases it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from bedrock_assets.bedrock.costs import actual_cost
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.prices import ModelPrice, usd
from bedrock_assets.ledger import JobAttempt

BUDGET_HELD = "budget_usd"


@dataclass(frozen=True)
class Budget:
    limit: float
    spent: float = 0.0
    committed: float = 0.0

    @property
    def left(self) -> float:
        return self.limit - self.spent - self.committed

    @classmethod
    def of(cls, limit: float, attempts: Iterable[JobAttempt], price: ModelPrice | None) -> Budget:
        """The budget after the pipeline's jobs: every attempt, superseded ones included (attempts without
        a job commit nothing; a superseded one whose output was never read is counted as spent nothing)."""
        attempts = list(attempts)
        latest: dict[str, int] = {}
        for a in attempts:
            latest[a.shard] = max(latest.get(a.shard, 0), a.attempt)
        spent = committed = 0.0
        for a in attempts:
            if not a.job_arn:
                continue
            cost = actual_cost(a, price)
            if cost is not None:
                spent += cost
            elif a.attempt == latest[a.shard]:
                committed += a.worst_usd or 0.0
        return cls(limit, spent, committed)

    def fits(self, need: float | None) -> bool:
        return need is not None and need <= self.left + 1e-9

    def hold_reason(self, need: float | None) -> str | None:
        """Why a job costing up to ``need`` may not be created now, or None if it fits."""
        if need is None:
            return (
                f"{BUDGET_HELD} {usd(self.limit)} is set but this model has no price: "
                "set price_overrides on the bedrock resource"
            )
        if self.fits(need):
            return None
        return (
            f"{BUDGET_HELD} {usd(self.limit)}: {usd(self.spent)} spent, {usd(self.committed)} committed, "
            f"{usd(max(self.left, 0.0))} left; this shard needs up to {usd(need)}: raise budget_usd to submit it"
        )

    def after(self, need: float) -> Budget:
        return replace(self, committed=self.committed + need)


def held_by_budget(attempt: JobAttempt) -> bool:
    return attempt.status is JobStatus.QUEUED and (attempt.message or "").startswith(BUDGET_HELD)
