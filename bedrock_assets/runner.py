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
import json
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from bedrock_assets.bedrock.budget import held_by_budget
from bedrock_assets.bedrock.prices import usd
from bedrock_assets.bedrock.resource import CallCounter
from bedrock_assets.chain import upstream_key
from bedrock_assets.components.bedrock_batch_pipeline import pipeline_storage
from bedrock_assets.components.pipeline_keys import (
    STAGES,
    TAG_JOB_STATUS,
    TAG_STAGE,
    PipelineKeys,
    partition_tags,
    stage_tags,
)
from bedrock_assets.errors import hint, is_transient
from bedrock_assets.graph.job_completion import (
    PipelineStatus,
    contiguous_groups,
    jobs_digest,
    latest_merges,
    run_partitions,
    span,
)
from bedrock_assets.graph.merged_dataset import JOBS_DIGEST
from bedrock_assets.graph.retry_rounds import RoundProgress, retry_due
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.spec import PipelineSpec

# run logs (and a failed step's traceback) stay in the instance and the UI; the console shows our own lines
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class PipelineRunError(RuntimeError):
    """A run failed or the pipelines did not finish in time."""


@dataclass
class RunSummary:
    pipeline: str
    rows: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    merged_uri: str = ""
    shards: int = 0
    job_statuses: dict[str, int] = field(default_factory=dict)
    runs_launched: int = 0
    sensor_ticks: int = 0
    bedrock_calls: CallCounter = field(default_factory=CallCounter)
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    max_error_rate: float = 0.0
    retried: int = 0
    retry_rounds: int = 0
    resent_in_batch_jobs: int = 0
    resent_on_demand: int = 0
    cost: float | None = None  # the bill by tokens; None: no price
    cost_batch: float = 0.0
    cost_on_demand: float = 0.0
    planned_expected: float | None = None
    planned_worst: float | None = None

    @property
    def error_rate(self) -> float:
        return self.failed / self.rows if self.rows else 0.0

    @property
    def within_error_limit(self) -> bool:
        return self.error_rate <= self.max_error_rate

    def lines(self) -> list[str]:
        calls = self.bedrock_calls.calls
        verdict = (
            f"within max_error_rate {self.max_error_rate:.1%}"
            if self.within_error_limit
            else f"FAILED: {self.error_rate:.1%} of rows failed, max_error_rate {self.max_error_rate:.1%}"
        )
        retries = (
            [
                f"  retried {self.retried} records in {self.retry_rounds} round(s): {self.resent_in_batch_jobs} "
                f"sent again in batch jobs, {self.resent_on_demand} answered on demand"
            ]
            if self.retry_rounds
            else []
        )
        return [
            f"pipeline {self.pipeline}: {self.rows} rows -> {self.succeeded} succeeded, {self.failed} failed"
            + (f" {self.errors}" if self.errors else "")
            + f" ({verdict})",
            f"  merged results: {self.merged_uri}",
            f"  shards: {self.shards}; jobs: {self.job_statuses}",
            *retries,
            f"  tokens: {self.input_tokens} in / {self.output_tokens} out",
            f"  cost: {usd(self.cost)} (batch {usd(self.cost_batch)}, on demand {usd(self.cost_on_demand)}); planned "
            f"{usd(self.planned_expected)} expected, {usd(self.planned_worst)} at most"
            if self.cost is not None
            else "  cost unknown: no price for this model (set price_overrides on the bedrock resource)",
            f"  {self.runs_launched} runs, {self.sensor_ticks} sensor ticks, {sum(calls.values())} Bedrock "
            f"calls {calls}, {self.seconds:.1f} s",
        ]


@dataclass(frozen=True)
class PipelineState:
    """Where a pipeline stands, and whether its merged_dataset was built from the current job of every shard."""

    status: PipelineStatus
    attempts: dict[str, JobAttempt]
    dataset_current: bool
    retry_due: bool = False

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


def _step_failure(event: Any) -> str:
    """A failed step's own error (its root cause, not Dagster's wrappers), with what to do when we know."""
    error = event.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    what_to_do = hint(error.cls_name or "", message)
    return f"{event.step_key}: {message}" + (f" ({what_to_do})" if what_to_do else "")


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
    run_tags = {**stage_tags(pipeline, stage, shards), **partition_tags(shards), **(tags or {})}
    result = defs.resolve_job_def(PipelineKeys(pipeline).job(stage)).execute_in_process(
        run_config={**QUIET, **(run_config or {})},
        instance=instance,
        raise_on_error=False,
        tags=run_tags,
        partition_key=shards[0] if len(shards) == 1 else None,
        asset_selection=list(assets) if assets else None,
    )
    if not result.success:
        failures = [_step_failure(e) for e in result.all_events if e.is_step_failure]
        raise PipelineRunError(
            f"{pipeline}: {stage} run {result.run_id} failed: " + ("; ".join(failures) or "see the run's logs")
        )
    return result


class Runner:
    """Executes stage runs of the pipelines in one Definitions, against one instance."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, log: Callable[[str], None]) -> None:
        self.defs = defs
        self.instance = instance
        self.log = log
        self.resources = dict(defs.resources or {})

    def execute(
        self,
        p: _Pipeline,
        stage: str,
        shards: Sequence[str] | None = None,
        assets: Sequence[dg.AssetKey] | None = None,
        tags: dict[str, str] | None = None,
    ) -> Any:
        result = execute_stage(self.defs, self.instance, p.spec.name, stage, shards, assets, tags)
        p.summary.runs_launched += 1
        for evaluation in result.get_asset_check_evaluations():
            calls = evaluation.metadata.get("bedrock_calls")
            if calls is not None:
                p.summary.bedrock_calls.merge(calls.value)
        return result

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
                partitions = set().union(*(result.get_requested_partitions(a) for a in assets)) - {None}
                if not partitions:
                    self.execute(p, stage, assets=assets)
                for group in contiguous_groups(partitions, order, str, limit=max(len(order), 1)):
                    self.execute(p, stage, group, assets)
                ran = True
        return result.cursor, ran

    def sensor_round(self, p: _Pipeline) -> bool:
        """Tick the pipeline's completion sensor; run what it requests."""
        sensor = self.defs.resolve_sensor_def(p.keys.completion_sensor)
        context = dg.build_sensor_context(
            instance=self.instance, resources=self.resources, definitions=self.defs, cursor=p.sensor_cursor
        )
        tick = sensor(context)
        assert isinstance(tick, dg.SensorResult)
        p.sensor_cursor = tick.cursor
        p.summary.sensor_ticks += 1
        p.summary.bedrock_calls.merge(json.loads(tick.cursor or "{}").get("calls", {}))
        for event in tick.asset_events or []:
            self.instance.report_runless_asset_event(event)
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
        latest = self.resources["bedrock_ledger"].get_ledger().latest_by_shard(p.spec.name)
        marks = latest_merges(self.instance, p.keys.merged_results)
        status = PipelineStatus.of(shards, latest, {k: m.job for k, m in marks.items()})
        record = self.instance.get_latest_materialization_event(p.keys.merged_dataset)
        meta = record.asset_materialization.metadata if record and record.asset_materialization else {}
        current = bool(shards) and JOBS_DIGEST in meta and meta[JOBS_DIGEST].value == jobs_digest(shards, latest)
        due = False
        if status.all_merged and not current:
            bedrock = self.resources["bedrock"]
            due = retry_due(
                p.spec,
                pipeline_storage(p.spec, self.resources["s3"], bedrock),
                RoundProgress.of(shards, latest, marks),
                p.spec.quotas(bedrock.quota_overrides).min_records_per_job,
            )
        return PipelineState(status, {k: latest[k] for k in shards if k in latest}, current, due)

    def finish(self, p: _Pipeline) -> None:
        record = self.instance.get_latest_materialization_event(p.keys.merged_dataset)
        assert record is not None and record.asset_materialization is not None
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        s = p.summary
        s.rows, s.succeeded, s.failed = int(meta["rows"]), int(meta["succeeded"]), int(meta["failed"])
        s.errors, s.merged_uri = dict(meta["errors"]), str(meta["uri"])
        s.input_tokens, s.output_tokens = int(meta["input_tokens"]), int(meta["output_tokens"])
        s.max_error_rate = p.spec.max_error_rate
        s.retried, s.retry_rounds = int(meta.get("records_retried", 0)), int(meta.get("retry_rounds", 0))
        s.resent_in_batch_jobs = int(meta.get("resent_in_batch_jobs", 0))
        s.resent_on_demand = int(meta.get("resent_on_demand", 0))
        if "cost_usd" in meta:
            s.cost, s.cost_batch = float(meta["cost_usd"]), float(meta["cost_batch_usd"])
            s.cost_on_demand = float(meta["cost_on_demand_usd"])
        s.planned_expected = float(meta["planned_cost_expected_usd"]) if "planned_cost_expected_usd" in meta else None
        s.planned_worst = float(meta["planned_cost_worst_usd"]) if "planned_cost_worst_usd" in meta else None


def budget_blocked(state: PipelineState) -> str | None:
    """Why a pipeline can go no further: only shards its budget holds are left (their reason), else None."""
    held = [a for a in state.attempts.values() if held_by_budget(a)]
    busy = [a for a in state.attempts.values() if not a.status.is_terminal and not held_by_budget(a)]
    if not held or busy or state.status.merged + len(held) < state.status.shards:
        return None
    return f"{held[0].message} ({len(held)} shard(s) wait)"


@dataclass
class _Outage:
    since: float
    waits: int = 0

    def next_wait(self) -> float:
        self.waits += 1
        return min(2.0**self.waits, 60.0)


def _timeout_message(seconds: float, states: list[PipelineState]) -> str:
    running = [
        f"{a.pipeline} {a.shard} ({a.status.value}{', ' + a.job_arn if a.job_arn else ''})"
        for st in states
        for a in st.attempts.values()
        if not a.status.is_terminal
    ]
    return (
        f"timed out after {seconds:.0f} s; "
        + (
            f"still running in Bedrock: {', '.join(running[:10])}"
            + (f" and {len(running) - 10} more" if len(running) > 10 else "")
            if running
            else "no job is still running"
        )
        + ". The jobs keep running; run the same command again to re-attach to them (no job is created twice)."
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
) -> list[RunSummary]:
    """Run the pipelines to a current merged dataset each.

    Control-plane outages and throttling while waiting are waited out with backoff for up to
    ``outage_seconds``; PipelineRunError when a run fails, the outage lasts longer, or on timeout.
    """
    started = time.monotonic()
    runner = Runner(defs, instance, log)
    pipelines = [_Pipeline(s, PipelineKeys(s.name), RunSummary(s.name)) for s in specs]
    # the automation sensor has been ticking before a user clicks "Materialize": its first
    # evaluation only records the state that later ones compare with ("newly" missing or updated)
    cursor, _ = runner.automation_round(pipelines, None)
    names = {p.spec.name for p in pipelines}
    for p in pipelines:
        upstream = p.spec.source.pipeline
        if upstream and instance.get_latest_materialization_event(upstream_key(upstream)) is None:
            if upstream not in names:
                raise PipelineRunError(
                    f"{p.spec.name} reads {upstream}'s merged dataset, which does not exist yet: run {upstream} first "
                    "(or both together)"
                )
            log(f"[{p.spec.name}] waits for {upstream}'s merged dataset (a chain); automation starts it")
            continue
        log(f"[{p.spec.name}] materializing raw_dataset")
        runner.execute(p, "prepare")
    last_progress: dict[str, str] = {}
    last_state: dict[str, PipelineState] = {}
    outage: _Outage | None = None
    while True:
        active = [p for p in pipelines if not p.done]
        try:
            ran = any([runner.sensor_round(p) for p in active])
            cursor, ran_automation = runner.automation_round(active, cursor)
            ran = ran or ran_automation
            states = {p.spec.name: runner.state(p) for p in active}
        except Exception as error:  # an outage or throttling past botocore's retries: wait, then carry on
            if not is_transient(error):
                raise
            outage = outage or _Outage(time.monotonic())
            if time.monotonic() - outage.since > outage_seconds:
                raise PipelineRunError(
                    f"AWS did not answer for {time.monotonic() - outage.since:.0f} s ({type(error).__name__}: "
                    f"{error}). The jobs keep running in Bedrock; run the same command again to re-attach."
                ) from error
            wait = outage.next_wait()
            log(f"AWS is not answering ({type(error).__name__}); retrying in {wait:.0f} s")
            time.sleep(wait)
            continue
        outage = None
        for p in active:
            state = states[p.spec.name]
            if state.status.all_merged and not state.dataset_current and not state.retry_due:
                # merged_dataset is built by automation once the last shard merges; if this round's
                # automation did not (a crash or failed run came between), nothing else will
                log(f"[{p.spec.name}] every shard is merged: materializing merged_dataset")
                runner.execute(p, "publish")
                state = runner.state(p)
            p.summary.shards, p.summary.job_statuses = state.status.shards, state.status.jobs
            line = state.status.line(p.spec.name)
            if line != last_progress.get(p.spec.name):
                log(f"{line} ({time.monotonic() - started:.0f} s)")
                last_progress[p.spec.name] = line
            if state.finished:
                p.done = True
                runner.finish(p)
                p.summary.seconds = time.monotonic() - started
                log(f"[{p.spec.name}] merged dataset is current")
            last_state[p.spec.name] = state
            if not ran and not p.done and (held := budget_blocked(state)):
                raise PipelineRunError(
                    f"{p.spec.name}: {held}. Everything the budget allowed is done; raise budget_usd in the "
                    "defs.yaml and run again to submit the rest."
                )
        if all(p.done for p in pipelines):
            return [p.summary for p in pipelines]
        if time.monotonic() - started > timeout_seconds:
            raise PipelineRunError(
                _timeout_message(
                    timeout_seconds,
                    [last_state[p.spec.name] for p in pipelines if not p.done and p.spec.name in last_state],
                )
            )
        if not ran:
            time.sleep(poll_seconds)
