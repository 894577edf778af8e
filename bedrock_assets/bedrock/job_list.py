"""The account's recent batch jobs, listed again and again (every poll) at the cost of what can have changed.

Slots are account-wide, so a poll lists every job submitted in the lookback window, ours or not: at
thousands of jobs, pages of a thousand summaries each poll. A job that reached a terminal state never
changes again (Completed, PartiallyCompleted, Failed, Stopped, Expired:
https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-monitor.html), so after one full list
this process asks only for the jobs submitted since the oldest one that was still open at its last list
(``submitTimeAfter``, less an overlap for a job that showed late and for clocks), and keeps the finished
ones it holds. A full list every ``FULL_EVERY`` seconds (and in every new process) is the safety net.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bedrock_assets.bedrock.resource import JobSummary

OVERLAP = timedelta(seconds=60)
FULL_EVERY = 15 * 60.0


class JobList:
    """One process's copy of an account's job list, as one client sees it (``job_list_of``)."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobSummary] = {}  # job ARN -> its summary at the last list that showed it
        self._listed_at: datetime | None = None  # when the last list started (this machine's clock)
        self._full_at = -FULL_EVERY  # monotonic time of the last full list
        self._lock = threading.Lock()

    def since(self, lookback: timedelta, now: datetime) -> tuple[datetime, bool]:
        """What the next list asks for: the submit time after which jobs can have changed, and whether that is
        the whole lookback window (a full list)."""
        start = now - lookback
        with self._lock:
            if self._listed_at is None or time.monotonic() - self._full_at >= FULL_EVERY:
                return start, True
            opened = [j.submit_time for j in self._jobs.values() if not j.status.is_terminal]
            submitted = [t for t in opened if t is not None]
            if len(submitted) < len(opened):  # an open job without a submit time: nothing to go by
                return start, True
            oldest = min([self._listed_at, *submitted])
        return max(start, oldest - OVERLAP), False

    def listed(self, lookback: timedelta, fetch: Callable[[datetime], list[JobSummary]]) -> list[JobSummary]:
        """Every job submitted in the lookback window: ``fetch(after)`` lists those submitted after a time."""
        now = datetime.now(UTC)
        after, full = self.since(lookback, now)
        started = time.monotonic()
        fetched = fetch(after)
        with self._lock:  # the list is whole from ``after`` on: what it does not show is gone
            kept = {} if full else {a: j for a, j in self._jobs.items() if j.submit_time and j.submit_time < after}
            kept.update((j.job_arn, j) for j in fetched)
            start = now - lookback
            self._jobs = {a: j for a, j in kept.items() if j.submit_time is None or j.submit_time >= start}
            self._listed_at = now
            if full:
                self._full_at = started
            return list(self._jobs.values())


_LISTS: weakref.WeakKeyDictionary[Any, JobList] = weakref.WeakKeyDictionary()
_LISTS_LOCK = threading.Lock()


def job_list_of(client: Any) -> JobList:
    """The job list this client keeps in this process (a client is shared per configuration and remade now
    and then: a new one starts with a full list); a fresh one when the client cannot be weakly referenced."""
    with _LISTS_LOCK:
        try:
            return _LISTS.setdefault(client, JobList())
        except TypeError:
            return JobList()
