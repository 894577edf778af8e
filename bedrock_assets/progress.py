"""Where a pipeline stands, from its ledger and the Dagster instance.

Which shards are merged (each shard's latest ``merged_results`` materialization carries a merge
mark: the job attempt it merged), which job of every shard a merged dataset or retry round was built
from (``jobs_digest``), the pipeline at a glance (``PipelineStatus``), the retry round in progress
(``RoundProgress``), and which runs are already working on which shards. The completion sensor, the
assets that gate on them and the headless runner all read progress here.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster import MetadataValue as Meta
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from bedrock_assets.bedrock.costs import actual_cost
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.metrics import Backlog
from bedrock_assets.bedrock.prices import ModelPrice, usd
from bedrock_assets.deadline import is_past_cutoff, job_rate, unanswered
from bedrock_assets.durations import describe
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.processes import release_dead_runs, runs_lost
from bedrock_assets.shards import load_retry_state, round_of
from bedrock_assets.spec import RetrySpec

if TYPE_CHECKING:
    from bedrock_assets.pipeline import Step

IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class MergedMark:
    """What a shard's latest merged_results materialization says: the job attempt it merged, and how
    many of its rows carry a retriable error (what the next retry round would send)."""

    job: str
    retriable: int = 0

    JOB = "merged_job"  # metadata keys, written with the merge and read back here
    RETRIABLE = "retriable"

    def metadata(self) -> dict[str, Any]:
        return {self.JOB: self.job, self.RETRIABLE: self.retriable}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> MergedMark | None:
        """The mark of a merged_results materialization (None: it holds no complete merge)."""
        if cls.JOB not in meta:
            return None
        retriable = meta[cls.RETRIABLE].value if cls.RETRIABLE in meta else 0
        return cls(str(meta[cls.JOB].value), int(retriable or 0))


def latest_merges(instance: DagsterInstance, merged_results: AssetKey) -> dict[str, MergedMark]:
    """Shard -> the mark of its latest merge: a merged_results materialization, or the observation that a
    shard whose job gave no output gets instead (the later event of a shard wins). Two queries for the latest
    storage id of every shard; the records are fetched only for the ids this process has not read yet (an event
    never changes: a tick costs what was merged since the last, not every shard)."""
    found: dict[str, tuple[int, MergedMark]] = {}
    for kind in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION):
        ids = instance.get_latest_storage_id_by_partition(merged_results, kind)
        for key, (storage_id, mark) in _MARKS.read(instance, merged_results, kind, ids).items():
            if mark is not None and storage_id > found.get(key, (-1, mark))[0]:
                found[key] = (storage_id, mark)
    return {k: mark for k, (_, mark) in found.items()}


_Held = dict[str, tuple[int, MergedMark | None]]  # partition -> (storage id, its mark)
_Copies = dict[tuple[str, str], _Held]  # (asset, event kind) -> what is held


class _MarkRecords:
    """This process's copy of the merge marks read by storage id, per event storage, asset and event kind."""

    def __init__(self) -> None:
        self._by_storage: dict[str, _Copies] = {}  # a persistent storage: by its configuration's digest
        self._ephemeral: weakref.WeakKeyDictionary[DagsterInstance, _Copies] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _copies(self, instance: DagsterInstance) -> _Copies:
        """The copies of this instance's storage (each tick of the daemon's sensors gets a new instance object of
        the same storage; an ephemeral instance's storage is its own)."""
        if not instance.is_persistent:
            return self._ephemeral.setdefault(instance, {})
        data = instance.get_ref().event_storage_data
        text = f"{data.module_name}.{data.class_name}:{data.config_yaml}" if data else ""
        return self._by_storage.setdefault(hashlib.sha256(text.encode()).hexdigest(), {})

    def read(self, instance: DagsterInstance, asset: AssetKey, kind: DagsterEventType, ids: Mapping[str, int]) -> _Held:
        """Partition -> (storage id, its mark) for these latest ids, fetching only the records not held."""
        key = (asset.to_user_string(), kind.value)
        with self._lock:
            copies = self._copies(instance)
            held = dict(copies.get(key, {}))
        if any(held[p][0] > i for p, i in ids.items() if p in held):  # ids went back: the storage was wiped
            held = {}
        new = [i for p, i in ids.items() if held.get(p, (None,))[0] != i]
        is_materialization = kind is DagsterEventType.ASSET_MATERIALIZATION
        fetch = instance.fetch_materializations if is_materialization else instance.fetch_observations
        for start in range(0, len(new), FETCH_CHUNK):
            chunk = new[start : start + FETCH_CHUNK]
            for record in fetch(AssetRecordsFilter(asset_key=asset, storage_ids=chunk), limit=len(chunk)).records:
                event = record.asset_materialization or record.asset_observation
                if record.partition_key:
                    mark = MergedMark.from_metadata(event.metadata if event else {})
                    held[record.partition_key] = (record.storage_id, mark)
        current = {p: held[p] for p in ids if p in held}
        with self._lock:
            copies[key] = current
        return current


FETCH_CHUNK = 5000  # storage ids per records query (SQLite binds at most 32,766 variables)
_MARKS = _MarkRecords()


def merged_jobs(marks: Mapping[str, MergedMark]) -> dict[str, str]:
    """Shard -> the attempt identity its latest merge holds."""
    return {k: m.job for k, m in marks.items()}


def jobs_digest(shards: Sequence[str], latest: Mapping[str, JobAttempt]) -> str:
    """Which job attempt of every shard a merged dataset (or a retry round) was built from, as one short digest."""
    text = "|".join(f"{k}={latest[k].identity if k in latest else ''}" for k in shards)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def unmerged(shards: Sequence[str], latest: Mapping[str, JobAttempt], merged: Mapping[str, str]) -> list[str]:
    """Shards whose latest job attempt is not what their last merge holds (or that have no attempt yet)."""
    return [k for k in shards if k not in latest or merged.get(k) != latest[k].identity]


@dataclass(frozen=True)
class Pace:
    """How fast a pipeline's jobs process records now, when they will be done at that rate, and the money: what
    finished jobs cost (by their tokens) and the most the jobs still running can cost."""

    per_second: float  # records a second, summed over the InProgress jobs (each since it was first seen InProgress)
    remaining: int  # records not processed yet (queued shards' included)
    spent: float | None  # None: no price
    committed: float | None
    backlog_eta: timedelta | None = None  # while none of ours processes: the model's batch queue drained

    def with_backlog(self, backlog: Backlog | None, attempts: Iterable[JobAttempt]) -> Pace:
        """The pace with the ETA the model's account-wide batch backlog gives (``attempts``: to learn the input
        tokens per record from those already read)."""
        if backlog is None:
            return self
        done = [a for a in attempts if a.input_tokens is not None and a.counts.processed]
        per_record = sum(a.input_tokens or 0 for a in done) / sum(a.counts.processed for a in done) if done else None
        drain = backlog.drain_time(per_record)
        return replace(self, backlog_eta=drain)

    @classmethod
    def of(cls, latest: Iterable[JobAttempt], now: datetime, price: ModelPrice | None) -> Pace:
        latest = list(latest)
        spent = committed = 0.0
        for a in latest:
            cost = actual_cost(a, price)
            spent += cost or 0.0
            if a.status.holds_slot or a.status is JobStatus.SUBMITTING:
                committed += a.worst_usd or 0.0
        return cls(
            sum(job_rate(a, now) for a in latest),
            sum(unanswered(a) for a in latest),
            spent if price is not None else None,
            committed if price is not None else None,
        )

    @property
    def eta(self) -> timedelta | None:
        """Time to process the rest at the current rate, else (nothing of ours processing) to drain the model's
        batch backlog (None: not known)."""
        if not self.remaining:
            return timedelta(0)
        return timedelta(seconds=self.remaining / self.per_second) if self.per_second else self.backlog_eta

    def text(self) -> str:
        eta = self.eta
        when = "ETA -" if eta is None else f"ETA {describe(eta)}"
        if eta is not None and not self.per_second and self.remaining:
            when = f"ETA ~{describe(eta)} (the model's batch backlog drained at its rate)"
        return (
            f"{self.per_second * 60:,.0f} records/min, {when}; spent {usd(self.spent)}, "
            f"{usd(self.committed)} at most in flight"
        )

    def metadata(self) -> dict[str, Any]:
        eta = self.eta
        meta: dict[str, Any] = {
            "records_per_minute": round(self.per_second * 60, 2),
            "records_remaining": self.remaining,
        }
        if eta is not None:
            meta["eta_seconds"] = round(eta.total_seconds())
        if self.spent is not None and self.committed is not None:
            meta |= {"cost_so_far_usd": round(self.spent, 10), "cost_in_flight_worst_usd": round(self.committed, 10)}
        return meta


@dataclass(frozen=True)
class PipelineStatus:
    """A pipeline at a glance: its shards' jobs by state, records processed, shards merged, what waits and why."""

    jobs: dict[str, int]
    records: int  # every record sent to a job: a row sent again in a retry round counts again
    processed: int
    shards: int
    merged: int
    queued_because: str | None = None
    resent: int = 0  # of ``records``, those in retry rounds' shards
    pace: Pace | None = None

    @classmethod
    def of(
        cls,
        shards: Sequence[str],
        latest: Mapping[str, JobAttempt],
        merged: Mapping[str, str],
        price: ModelPrice | None = None,
        now: datetime | None = None,
    ) -> PipelineStatus:
        """``price`` and ``now``: with the pace (rate, ETA, money) as of ``now``."""
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
            resent=sum(latest[k].records for k in shards if k in latest and round_of(k) > 0),
            pace=Pace.of(attempts, now, price) if now is not None else None,
        )

    @property
    def all_merged(self) -> bool:
        return self.shards > 0 and self.merged == self.shards

    @property
    def done_share(self) -> float:
        """How far along: records processed of those sent, then shards merged (half each)."""
        if not self.shards:
            return 0.0
        return 0.5 * (self.processed / self.records if self.records else 0.0) + 0.5 * self.merged / self.shards

    def line(self, pipeline: str) -> str:
        jobs = ", ".join(f"{n} {s}" for s, n in sorted(self.jobs.items())) or "none yet"
        why = f"; queued: {self.queued_because}" if self.queued_because else ""
        resent = (
            f" ({self.records - self.resent} rows + {self.resent} sent again in retry rounds)" if self.resent else ""
        )
        return (
            f"[{pipeline}] jobs: {jobs}; records processed {self.processed}/{self.records}{resent}; "
            f"merged {self.merged}/{self.shards} shards{why}"
        )

    def progress_line(self, pipeline: str) -> str:
        """``line`` with the pace (when known)."""
        return self.line(pipeline) + (f"; {self.pace.text()}" if self.pace is not None else "")

    def metadata(self) -> dict[str, Any]:
        return {
            **(self.pace.metadata() if self.pace is not None else {}),
            "jobs_by_status": Meta.json(self.jobs),
            "records_processed": self.processed,
            "records_total": self.records,
            "records_sent_again": self.resent,
            "shards_merged": self.merged,
            "shards": self.shards,
            **({"queued_because": Meta.text(self.queued_because)} if self.queued_because else {}),
        }


@dataclass(frozen=True)
class RoundProgress:
    """The latest round with shards: are they all merged, and how many of their rows could be retried."""

    round: int
    keys: list[str]
    all_merged: bool
    retriable: int
    basis: str

    @classmethod
    def of(
        cls, partitions: Sequence[str], latest: Mapping[str, JobAttempt], marks: Mapping[str, MergedMark]
    ) -> RoundProgress:
        current = max((round_of(k) for k in partitions), default=0)
        keys = [k for k in partitions if round_of(k) == current]
        return cls(
            round=current,
            keys=keys,
            all_merged=bool(keys) and not unmerged(keys, latest, merged_jobs(marks)),
            retriable=sum(marks[k].retriable for k in keys if k in marks),
            basis=jobs_digest(keys, latest),
        )

    def next_round_due(self, retry: RetrySpec, min_records: int, past_cutoff: bool = False) -> bool:
        """Another round would send records: this one is merged, left retriable rows, and rounds remain. Past a
        deadline's batch cutoff one round more is allowed (on demand): the records the cutoff stopped get their
        first answer there."""
        rounds = retry.max_rounds + (1 if past_cutoff else 0)
        if not self.all_merged or self.retriable == 0 or self.round >= rounds:
            return False
        return self.retriable >= min_records or retry.small_remainder == "on_demand" or past_cutoff


def retry_due(step: Step, progress: RoundProgress, past_cutoff: bool | None = None) -> bool:
    """The next round should be cut now (and nobody stopped the pipeline); ``past_cutoff``: whether the pipeline
    passed its deadline's batch cutoff (looked up when not given)."""
    if past_cutoff is None:
        past_cutoff = is_past_cutoff(step)
    due = progress.next_round_due(step.spec.retry, step.quotas.min_records_per_job, past_cutoff)
    return due and not load_retry_state(step).stopped_at


# ---- runs the instance has in progress --------------------------------------------------------


def run_partitions(tags: Mapping[str, str], order: Sequence[str]) -> list[str]:
    """The shard partitions a run (or run request) covers: its partition, or its partition range."""
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    first, last = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if first in order and last in order:
        return list(order[order.index(first) : order.index(last) + 1])
    return []


@dataclass(frozen=True)
class RunHolds:
    """Which shards runs hold: ``busy``, covered by a queued or running run; ``lost``, the runs covering each
    shard that died with their process (their number is part of the next run key, so a lost run's work is
    requested anew)."""

    busy: frozenset[str]
    lost: Mapping[str, frozenset[str]]

    def lost_in(self, shards: Sequence[str]) -> int:
        """How many lost runs covered any of these shards."""
        return len(frozenset().union(*(self.lost.get(s, frozenset()) for s in shards)))


def run_holds(instance: DagsterInstance, job_names: Sequence[str], order: Sequence[str]) -> RunHolds:
    """The shards the runs of these jobs hold, after releasing those whose process is gone."""
    release_dead_runs(instance, job_names)
    busy: set[str] = set()
    for job_name in job_names:
        for run in instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_PROGRESS)):
            busy.update(run_partitions(run.tags, order))
    lost: dict[str, set[str]] = {}
    for run in runs_lost(instance, job_names):
        for shard in run_partitions(run.tags, order):
            lost.setdefault(shard, set()).add(run.run_id)
    return RunHolds(frozenset(busy), {s: frozenset(ids) for s, ids in lost.items()})
