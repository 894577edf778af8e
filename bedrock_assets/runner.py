"""Headless runs: the daemon's order of work, carried out in this process until the merged dataset is current.

There is no order of our own here. After materializing raw_dataset (what a user's click does), each
round evaluates the pipelines' automation conditions, exactly as their automation sensor does, and
their completion sensor, exactly as the daemon ticks it, and executes the runs they request, in
this process, with the stage jobs and tags the daemon would use. Whatever another process has
already done (a second ``bedrock-assets run``, ``dg dev`` on the same instance) shows up in the
ledger and the instance and is not requested again; nothing is ever waited for that this process
would not do itself. A pipeline is finished when its merged_dataset was built from the current job
of every shard.
"""

from __future__ import annotations

import functools
import operator
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.tags import RUN_KEY_TAG

from bedrock_assets.bedrock.budget import held_by_budget
from bedrock_assets.bedrock.prices import usd
from bedrock_assets.bedrock.resource import CallCounter
from bedrock_assets.chain import upstream_key
from bedrock_assets.deadline import DeadlineView, load_cutoff
from bedrock_assets.errors import TRANSIENT_CLASS_NAMES, hint, is_transient
from bedrock_assets.graph.job_completion import contiguous_groups
from bedrock_assets.graph.merged_dataset import FAILED_ROWS
from bedrock_assets.graph.merged_results import NO_OUTPUT
from bedrock_assets.interrupts import StopRequest
from bedrock_assets.keys import STAGES, TAG_JOB_STATUS, TAG_OWNER, TAG_STAGE, PipelineKeys, partition_tags, stage_tags
from bedrock_assets.ledger import JobAttempt, latest_by_shard
from bedrock_assets.pipeline import Pipeline
from bedrock_assets.processes import OWNER, release_dead_runs
from bedrock_assets.progress import (
    PipelineStatus,
    RoundProgress,
    jobs_digest,
    latest_merges,
    merged_jobs,
    retry_due,
    run_partitions,
)
from bedrock_assets.report import JOBS_DIGEST, PipelineReport
from bedrock_assets.shards import span
from bedrock_assets.spec import PipelineSpec

# run logs (and a failed step's traceback) stay in the instance and the UI; the console shows our own lines
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class PipelineRunError(RuntimeError):
    """A run failed or the pipelines did not finish in time; ``transient``: a stage run failed only for an
    outage or throttling past its retries (the runner waits it out and runs it again)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class _OutOfTime(BaseException):
    """--timeout passed while a stage run waited out an outage."""


class RunInterrupted(PipelineRunError):
    """SIGINT or SIGTERM stopped the run at a safe point; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class _StopHere(BaseException):
    """Raised before a stage run would start once a stop was requested."""


def counted(counts: Mapping[str, int]) -> str:
    """``{'Completed': 3, 'Failed': 1}`` as prose, largest first: ``3 Completed, 1 Failed``."""
    return ", ".join(f"{n:,} {name}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


@dataclass
class RunSummary:
    """What a headless run of one pipeline did; the figures of its result are its merged_dataset's report."""

    pipeline: str
    max_error_rate: float = 0.0
    budget_usd: float | None = None
    report: PipelineReport | None = None
    shards: int = 0
    job_statuses: dict[str, int] = field(default_factory=dict)
    runs_launched: int = 0
    sensor_ticks: int = 0
    bedrock_calls: CallCounter = field(default_factory=CallCounter)
    seconds: float = 0.0

    def _report(self) -> PipelineReport:
        if self.report is None:
            raise ValueError(f"{self.pipeline} has no merged dataset yet")
        return self.report

    @property
    def rows(self) -> int:
        return self._report().dataset.rows

    @property
    def succeeded(self) -> int:
        return self._report().dataset.succeeded

    @property
    def failed(self) -> int:
        return self._report().dataset.failed

    @property
    def errors(self) -> dict[str, int]:
        return self._report().dataset.errors

    @property
    def merged_uri(self) -> str:
        return self._report().dataset.uri

    @property
    def retried(self) -> int:
        return self._report().dataset.retried

    @property
    def retry_rounds(self) -> int:
        return self._report().dataset.retry_rounds

    @property
    def resent_in_batch_jobs(self) -> int:
        return self._report().dataset.resent_in_batch_jobs

    @property
    def resent_on_demand(self) -> int:
        return self._report().dataset.resent_on_demand

    @property
    def input_tokens(self) -> int:
        return self._report().input_tokens

    @property
    def output_tokens(self) -> int:
        return self._report().output_tokens

    @property
    def cost(self) -> float | None:
        """The bill by tokens; None: no price."""
        return self._report().cost.total

    @property
    def planned_expected(self) -> float | None:
        return self._report().planned_expected

    @property
    def planned_worst(self) -> float | None:
        return self._report().planned_worst

    @property
    def error_rate(self) -> float:
        return self._report().dataset.error_rate

    @property
    def within_error_limit(self) -> bool:
        return self.error_rate <= self.max_error_rate

    def _overrun(self) -> str:
        total = self._report().cost.total
        if self.budget_usd is None or total is None or total <= self.budget_usd:
            return ""
        return f"; OVER budget_usd {usd(self.budget_usd)} by {usd(total - self.budget_usd)}"

    def _lanes(self) -> str:
        """The bill by lane: ``batch 1,000 records $0.42, on demand (default) 400 records $0.33``."""
        report = self._report()
        lanes = [f"{r['lane']} {int(r['records']):,} records {r['cost']}" for r in report.cost_by_lane]
        return ", ".join(lanes) or f"batch {usd(report.cost.batch)}, on demand {usd(report.cost.on_demand)}"

    def lines(self) -> list[str]:
        report, calls = self._report(), self.bedrock_calls.calls
        d, cost = report.dataset, report.cost
        verdict = (
            f"within max_error_rate {self.max_error_rate:.1%}"
            if self.within_error_limit
            else f"FAILED: {self.error_rate:.1%} of rows failed, max_error_rate {self.max_error_rate:.1%}"
        )
        retries = (
            [
                f"  retried {d.retried} records in {d.retry_rounds} round(s): {d.resent_in_batch_jobs} "
                f"sent again in batch jobs, {d.resent_on_demand} answered on demand"
            ]
            if d.retry_rounds
            else []
        )
        ended = [j for j in report.jobs if j.get("message")]  # jobs that ended without output, and why
        reasons = [f"  {j['shard']} {j['status']}: {j['message']}" for j in ended[:3]]
        if len(ended) > 3:
            reasons.append(f"  and {len(ended) - 3} more jobs without output (see merged_dataset's jobs table)")
        return [
            f"pipeline {self.pipeline}: {d.rows:,} rows -> {d.succeeded:,} succeeded, {d.failed:,} failed"
            + (f" ({counted(d.errors)})" if d.errors else "")
            + f"; {verdict}",
            f"  merged results: {d.uri}",
            f"  shards: {self.shards}; jobs: {counted(self.job_statuses)}",
            *reasons,
            *retries,
            f"  tokens: {report.input_tokens:,} in, {report.output_tokens:,} out",
            f"  cost: {usd(cost.total)} ({self._lanes()}); planned "
            f"{usd(report.planned_expected)} expected, {usd(report.planned_worst)} at most" + self._overrun()
            if cost.total is not None
            else "  cost unknown: no price for this model (set price_overrides on the bedrock resource)",
            f"  {plural(self.runs_launched, 'stage run')}, {plural(self.sensor_ticks, 'sensor tick')}, "
            f"{plural(sum(calls.values()), 'Bedrock call')}"
            + (f" ({counted(calls)})" if calls else "")
            + f"; {self.seconds:.1f} s in all",
        ]


@dataclass(frozen=True)
class PipelineState:
    """Where a pipeline stands, and whether its merged_dataset was built from the current job of every shard."""

    status: PipelineStatus
    attempts: dict[str, JobAttempt]
    dataset_current: bool
    retry_due: bool = False
    deadline: DeadlineView | None = None  # where it stands against its deadline (None: it has none)

    def progress(self, pipeline: str) -> tuple[str, str]:
        """What changed (the line a new progress line is printed for) and the line printed: with the pace and
        the deadline, which move on their own."""
        key, shown = self.status.line(pipeline), self.status.progress_line(pipeline)
        d = self.deadline
        if d is not None:
            key += f"; cutoff reached: {d.reached is not None}"
            shown += "; " + d.short(datetime.now(UTC))
        return key, shown

    @property
    def finished(self) -> bool:
        return self.status.all_merged and self.dataset_current


@dataclass
class _Pipeline:
    spec: PipelineSpec
    keys: PipelineKeys
    summary: RunSummary
    done: bool = False
    sensor_cursor: str | None = None
    last_tick: float = float("-inf")  # monotonic time of the completion sensor's last tick


def _transient_failure(event: Any) -> bool:
    """A step that failed for an outage or throttling past its retries (the steps turn anything else into a
    Failure: ``errors.failing_at_once``)."""
    data = event.step_failure_data
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause
    return data.user_failure_data is None and error is not None and error.cls_name in TRANSIENT_CLASS_NAMES


def _step_failure(event: Any) -> str:
    """A failed step's own error (its root cause, not Dagster's wrappers), with what to do when we know."""
    error = event.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    if error.cls_name == "Failure":  # ours, written for the user: without Dagster's class path in front
        message = re.sub(r"^[\w.]*Failure: ", "", message)
    what_to_do = hint(error.cls_name or "", message)
    return f"{event.step_key}: {message}" + (f" ({what_to_do})" if what_to_do else "")


OUTCOME_FAILURES = (NO_OUTPUT, FAILED_ROWS)


def _reports_an_outcome(event: Any) -> bool:
    """A step that failed on purpose to show an outcome red (a job without output, failed rows beyond
    max_error_rate) after recording everything: the pipeline goes on."""
    data = event.step_failure_data.user_failure_data
    return data is not None and any(key in data.metadata for key in OUTCOME_FAILURES)


def execute_stage(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    pipeline: str,
    stage: str,
    shards: Sequence[str] | None = None,
    assets: Sequence[dg.AssetKey] | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict[str, Any] | None = None,
) -> Any:
    """One run of a pipeline's stage job (over consecutive shards, when partitioned), with the tags the
    daemon's runs carry; PipelineRunError with each failed step's own message if it fails."""
    shards = list(shards or [])
    run_tags = {**stage_tags(pipeline, stage, shards), **partition_tags(shards), TAG_OWNER: OWNER, **(tags or {})}
    result = defs.resolve_job_def(PipelineKeys(pipeline).job(stage)).execute_in_process(
        run_config={**QUIET, **(run_config or {})},
        instance=instance,
        raise_on_error=False,
        tags=run_tags,
        partition_key=shards[0] if len(shards) == 1 else None,
        asset_selection=list(assets) if assets else None,
    )
    failed_steps = [e for e in result.all_events if e.is_step_failure]
    if not result.success and failed_steps and all(_reports_an_outcome(e) for e in failed_steps):
        return result  # the run is red in Dagster, as it should be; its outcome is in the rows and the summary
    if not result.success:
        failures = [_step_failure(e) for e in failed_steps]
        raise PipelineRunError(
            f"{pipeline}: {stage} run {result.run_id} failed: " + ("; ".join(failures) or "see the run's logs"),
            transient=bool(failed_steps) and all(_transient_failure(e) for e in failed_steps),
        )
    return result


class Runner:
    """Executes stage runs of the pipelines in one Definitions, against one instance."""

    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        log: Callable[[str], None],
        stop: StopRequest | None = None,
    ) -> None:
        self.defs = defs
        self.instance = instance
        self.log = log
        self.resources = dict(defs.resources or {})
        self.stop = stop or StopRequest()
        self.outage = _Outage(900.0)
        self.deadline = float("inf")  # monotonic time of --timeout

    def execute(
        self,
        p: _Pipeline,
        stage: str,
        shards: Sequence[str] | None = None,
        assets: Sequence[dg.AssetKey] | None = None,
        tags: dict[str, str] | None = None,
    ) -> Any:
        while True:
            if self.stop.is_set():  # a safe point: between stage runs
                raise _StopHere
            try:
                result = execute_stage(self.defs, self.instance, p.spec.name, stage, shards, assets, tags)
                break
            except PipelineRunError as error:  # an outage: waited out, then the same run again
                left = self.deadline - time.monotonic()
                if not error.transient:
                    raise
                if left <= 0:
                    raise _OutOfTime from error
                self.outage.wait(error, self.log, self.stop, left)
        p.summary.runs_launched += 1
        for evaluation in result.get_asset_check_evaluations():
            p.summary.bedrock_calls.add_metadata(evaluation.metadata)
        return result

    def start(self, pipelines: list[_Pipeline]) -> Any:
        """What a user's click does: materialize each raw_dataset (a chain's waits for its upstream).

        The automation sensor has been ticking before a user clicks "Materialize": its first evaluation
        only records the state that later ones compare with ("newly" missing or updated); its cursor is
        returned.
        """
        for p in pipelines:  # a run killed with its process holds nothing: automation may request its work again
            for run in release_dead_runs(self.instance, [p.keys.job(stage) for stage in STAGES]):
                self.log(f"[{p.spec.name}] run {run.run_id} ended with its process: marked failed")
        cursor, _ = self.automation_round(pipelines, None)
        names = {p.spec.name for p in pipelines}
        for p in pipelines:
            upstream = p.spec.source.pipeline
            if upstream and self.instance.get_latest_materialization_event(upstream_key(upstream)) is None:
                if upstream not in names:
                    raise PipelineRunError(
                        f"{p.spec.name} reads {upstream}'s merged dataset, which does not exist yet: run {upstream} "
                        "first (or both together)"
                    )
                self.log(f"[{p.spec.name}] waits for {upstream}'s merged dataset (a chain); automation starts it")
                continue
            self.log(f"[{p.spec.name}] materializing raw_dataset")
            self.execute(p, "prepare")
        return cursor

    def automation_round(self, pipelines: list[_Pipeline], cursor: Any) -> tuple[Any, bool]:
        """Evaluate the automation conditions of the pipelines' assets; run what they request."""
        selection = functools.reduce(operator.or_, (p.keys.selection for p in pipelines))
        result = dg.evaluate_automation_conditions(self.defs, self.instance, asset_selection=selection, cursor=cursor)
        ran = False
        for p in pipelines:
            order = self.instance.get_dynamic_partitions(p.keys.partitions)
            for stage, nodes in STAGES.items():
                assets = [p.keys.asset(n) for n in nodes if result.get_requested_partitions(p.keys.asset(n))]
                if not assets:
                    continue
                requested = set().union(*(result.get_requested_partitions(a) for a in assets))
                partitions = {k for k in requested if k is not None}
                if not partitions:
                    self.execute(p, stage, assets=assets)
                for group in contiguous_groups(partitions, order, str, limit=max(len(order), 1)):
                    self.execute(p, stage, group, assets)
                ran = True
        return result.cursor, ran

    def sensor_round(self, p: _Pipeline, poll_seconds: float = 0.0) -> bool:
        """Tick the pipeline's completion sensor, at most once per ``poll_seconds`` (so the Bedrock calls a tick
        makes, a refused create among them, stay bounded per poll interval); run what it requests."""
        if time.monotonic() - p.last_tick < poll_seconds:
            return False
        p.last_tick = time.monotonic()
        sensor = self.defs.resolve_sensor_def(p.keys.completion_sensor)
        context = dg.build_sensor_context(
            instance=self.instance, resources=self.resources, definitions=self.defs, cursor=p.sensor_cursor
        )
        with partition_loading_context(dynamic_partitions_store=self.instance):  # as the daemon wraps a tick
            tick = sensor.evaluate_tick(context)  # what the daemon calls: run requests checked against the targets
        p.sensor_cursor = tick.cursor
        p.summary.sensor_ticks += 1
        for event in tick.asset_events or []:
            self.instance.report_runless_asset_event(event)
            p.summary.bedrock_calls.add_metadata(event.metadata)
        order = self.instance.get_dynamic_partitions(p.keys.partitions)
        for request in tick.run_requests or []:
            stage = request.tags[TAG_STAGE]
            shards = [request.partition_key] if request.partition_key else run_partitions(request.tags, order)
            self.execute(p, stage, shards, tags={**request.tags, RUN_KEY_TAG: request.run_key or ""})
            status = f" ({request.tags[TAG_JOB_STATUS]})" if TAG_JOB_STATUS in request.tags else ""
            self.log(f"[{p.spec.name}] {stage} {span(shards)}{status}".rstrip())
        return bool(tick.run_requests)

    def state(self, p: _Pipeline) -> PipelineState:
        shards = self.instance.get_dynamic_partitions(p.keys.partitions)
        attempts = self.resources["bedrock_ledger"].get_ledger().attempts_of(p.spec.name)
        latest = latest_by_shard(attempts)
        marks = latest_merges(self.instance, p.keys.merged_results)
        step = Pipeline.of(p.spec).step(self.resources["s3"], self.resources["bedrock"])
        now = datetime.now(UTC)
        status = PipelineStatus.of(shards, latest, merged_jobs(marks), step.price, now)
        report = self.report(p)
        current = bool(shards) and report is not None and report.jobs_digest == jobs_digest(shards, latest)
        due = False
        if status.all_merged and not current:
            due = retry_due(step, RoundProgress.of(shards, latest, marks))
        deadline = None
        if p.spec.deadline.active:
            deadline = DeadlineView.of(p.spec, attempts, latest.values(), load_cutoff(step))
        return PipelineState(status, {k: latest[k] for k in shards if k in latest}, current, due, deadline)

    def report(self, p: _Pipeline) -> PipelineReport | None:
        """The report of the pipeline's latest merged dataset (None: none yet)."""
        record = self.instance.get_latest_materialization_event(p.keys.merged_dataset)
        meta = record.asset_materialization.metadata if record and record.asset_materialization else {}
        return PipelineReport.from_metadata(meta) if JOBS_DIGEST in meta else None

    def settle(self, p: _Pipeline, state: PipelineState, progress: _Progress) -> PipelineState:
        """After a round: publish what automation did not, say what changed, and finish a pipeline that is done."""
        if state.status.all_merged and not state.dataset_current and not state.retry_due:
            # the completion sensor requests the publish run at its next tick (as under the daemon, where
            # test_daemon_path holds it); the runner runs it in this round rather than wait for that tick
            self.log(f"[{p.spec.name}] every shard is merged: materializing merged_dataset")
            self.execute(p, "publish")
            state = self.state(p)
        p.summary.shards, p.summary.job_statuses = state.status.shards, state.status.jobs
        progress.show(p.spec.name, *state.progress(p.spec.name), state.status.done_share)
        if state.finished:
            p.done = True
            p.summary.report = self.report(p)
            p.summary.seconds = progress.seconds
            self.log(f"[{p.spec.name}] merged dataset is current")
        return state


def budget_blocked(state: PipelineState) -> str | None:
    """Why a pipeline can go no further: only shards its budget holds are left (their reason), else None."""
    held = [a for a in state.attempts.values() if held_by_budget(a)]
    busy = [a for a in state.attempts.values() if not a.status.is_terminal and not held_by_budget(a)]
    if not held or busy or state.status.merged + len(held) < state.status.shards:
        return None
    return f"{held[0].message} ({len(held)} shard(s) wait)"


@dataclass
class _Progress:
    """The progress lines printed so far (one per change), and the time since the run started."""

    log: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    last: dict[str, str] = field(default_factory=dict)
    bar: bool = False  # a progress bar in front of each line (on a terminal)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def show(self, pipeline: str, key: str, line: str, share: float = 0.0) -> None:
        """Print ``line`` when ``key`` changed since the pipeline's last line."""
        if key != self.last.get(pipeline):
            self.log(f"{bar(share) + ' ' if self.bar else ''}{line} ({self.seconds:.0f} s)")
            self.last[pipeline] = key


def bar(share: float, width: int = 20) -> str:
    """``[#######.............]  35%``."""
    filled = round(max(min(share, 1.0), 0.0) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%}"


@dataclass
class _Outage:
    """Control-plane outages and throttling past botocore's retries, waited out with backoff up to a limit."""

    limit: float
    since: float | None = None
    waits: int = 0

    def wait(self, error: Exception, log: Callable[[str], None], stop: StopRequest, left: float) -> None:
        """Wait before the next round (at most ``left`` seconds, less when a stop is requested); re-raise what
        is not transient, PipelineRunError past the limit."""
        if not (is_transient(error) or getattr(error, "transient", False)):
            raise error
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        if now - self.since > self.limit:
            raise PipelineRunError(
                f"AWS did not answer for {now - self.since:.0f} s ({type(error).__name__}: "
                f"{error}). The jobs keep running in Bedrock; run the same command again to re-attach."
            ) from error
        self.waits += 1
        wait = max(min(2.0**self.waits, 60.0, left), 0.0)
        log(f"AWS is not answering ({type(error).__name__}); retrying in {wait:.0f} s")
        stop.wait(wait)

    def over(self) -> None:
        self.since, self.waits = None, 0


def in_bedrock(states: Sequence[PipelineState]) -> str:
    """The jobs still running in Bedrock (they keep running, and are billed, whatever this process does) and
    the shards still waiting for a job, as one sentence."""
    open_attempts = [a for st in states for a in st.attempts.values() if not a.status.is_terminal]
    running = [f"{a.pipeline} {a.shard} ({a.status.value}, {a.job_arn})" for a in open_attempts if a.job_arn]
    waiting = [f"{a.pipeline} {a.shard} ({a.status.value})" for a in open_attempts if not a.job_arn]
    parts = [f"still running in Bedrock: {_first_ten(running)}" if running else "no job is still running"]
    if waiting:
        parts.append(f"no job yet for {_first_ten(waiting)}")
    return "; ".join(parts)


def _first_ten(items: Sequence[str]) -> str:
    return ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")


AGAIN = "run the same command again to re-attach to the jobs and go on (no job is created twice)"


def _timeout_message(seconds: float, states: Sequence[PipelineState]) -> str:
    return f"timed out after {seconds:.0f} s; {in_bedrock(states)}. The jobs keep running; {AGAIN}."


def _interrupted_message(stop: StopRequest, states: Sequence[PipelineState]) -> str:
    return (
        f"stopped by {stop.signal} between two stage runs; {in_bedrock(states)}. The jobs keep running in "
        f"Bedrock (bedrock-assets stop stops them); {AGAIN}."
    )


def run_pipelines(
    defs: dg.Definitions,
    specs: Sequence[PipelineSpec],
    instance: dg.DagsterInstance,
    *,
    poll_seconds: float = 2.0,
    timeout_seconds: float = 3600.0,
    outage_seconds: float = 900.0,
    log: Callable[[str], None] = print,
    stop: StopRequest | None = None,
) -> list[RunSummary]:
    """Run the pipelines to a current merged dataset each.

    Control-plane outages and throttling while waiting are waited out with backoff for up to
    ``outage_seconds``; PipelineRunError when a run fails, the outage lasts longer, or on timeout;
    RunInterrupted at the first safe point after ``stop`` is set (a signal: ``interrupts``).
    """
    runner = Runner(defs, instance, log, stop)
    bedrock = runner.resources["bedrock"]  # its job states polled as often as this run ticks the sensor
    if poll_seconds < bedrock.poll_seconds:
        # a new resource from its configuration (Dagster rebuilds a resource from that, so model_copy would not do)
        settings = {**bedrock._get_non_default_public_field_values(), "poll_seconds": poll_seconds}
        runner.resources["bedrock"] = type(bedrock)(**settings)
    pipelines = [_Pipeline(s, PipelineKeys(s.name), RunSummary(s.name, s.max_error_rate, s.budget_usd)) for s in specs]
    try:
        return _run_rounds(runner, pipelines, poll_seconds, timeout_seconds, outage_seconds)
    except _StopHere:
        raise RunInterrupted(
            _interrupted_message(runner.stop, _states_now(runner, pipelines)), runner.stop.number
        ) from None


def _states_now(runner: Runner, pipelines: Sequence[_Pipeline]) -> list[PipelineState]:
    """Where the unfinished pipelines stand, as far as AWS answers now (nothing when it does not)."""
    try:
        return [runner.state(p) for p in pipelines if not p.done]
    except Exception:  # noqa: BLE001 - the message goes without the list rather than not at all
        return []


def _run_rounds(
    runner: Runner, pipelines: list[_Pipeline], poll_seconds: float, timeout_seconds: float, outage_seconds: float
) -> list[RunSummary]:
    log, stop = runner.log, runner.stop
    progress = _Progress(log, bar=log is print and sys.stdout.isatty())
    outage = runner.outage = _Outage(outage_seconds)
    runner.deadline = time.monotonic() + timeout_seconds
    last_state: dict[str, PipelineState] = {}
    try:
        cursor = runner.start(pipelines)
    except _OutOfTime:
        raise PipelineRunError(_timeout_message(timeout_seconds, [])) from None
    while True:
        if stop.is_set():
            raise _StopHere
        if progress.seconds > timeout_seconds:  # checked here too: while AWS does not answer
            unfinished = [last_state[p.spec.name] for p in pipelines if not p.done and p.spec.name in last_state]
            raise PipelineRunError(_timeout_message(timeout_seconds, unfinished))
        active = [p for p in pipelines if not p.done]
        try:
            ran = any([runner.sensor_round(p, poll_seconds) for p in active])
            cursor, ran_automation = runner.automation_round(active, cursor)
            ran = ran or ran_automation
            states = {p.spec.name: runner.state(p) for p in active}
        except _OutOfTime:
            unfinished = [last_state[p.spec.name] for p in pipelines if not p.done and p.spec.name in last_state]
            raise PipelineRunError(_timeout_message(timeout_seconds, unfinished)) from None
        except Exception as error:  # an outage or throttling past botocore's retries: wait, then carry on
            outage.wait(error, log, stop, timeout_seconds - progress.seconds)
            continue
        outage.over()
        for p in active:
            state = last_state[p.spec.name] = runner.settle(p, states[p.spec.name], progress)
            if not ran and not p.done and (held := budget_blocked(state)):
                raise PipelineRunError(
                    f"{p.spec.name}: {held}. Everything the budget allowed is done; raise budget_usd in the "
                    "defs.yaml and run again to submit the rest."
                )
        if all(p.done for p in pipelines):
            return [p.summary for p in pipelines]
        if not ran:
            stop.wait(poll_seconds)
