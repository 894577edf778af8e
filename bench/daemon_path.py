"""The daemon path: one click on raw_dataset under ``dg dev`` to a materialized merged_dataset, and where the time goes.

    python -m bench.daemon_path [--project-root DIR] [--rows 3000] [--pipeline cot_answers] [--timeout 900]
                                [--home DIR] [--time-scale 1.0] [--error-rate 0.01] [--give-up-after 3]

Mirrors ``bedrock-assets dev``: a fresh home directory, the embedded local stack in this process (emulator
time scale 1, 1% record errors), the sample data seeded, and ``dg dev`` (this venv's) in a subprocess with
``DAGSTER_HOME=<home>/dagster``. Once the webserver answers GraphQL and the daemons are healthy, it launches
the run the UI's "Materialize" button on raw_dataset launches (``launchPipelineExecution`` of
``__ASSET_JOB`` with an asset selection and that asset's checks), then reads the Dagster instance until
the pipeline's merged_dataset has a materialization (or the completion sensor failed --give-up-after ticks in
a row). It prints the click-to-result time, every run (stage, shards, the tick or backfill that requested it,
queue / boot / execution times relative to the click), every tick of the pipeline's automation and completion
sensors, the emulated Bedrock jobs, and a breakdown of the wall time (a run executing, a run queued or
booting, a backfill waiting for the backfill daemon, a Bedrock job in flight, or nothing in flight: waiting
for a tick).

``--project-root`` measures another checkout of the package (e.g. a ``git worktree`` of an older commit):
its directory goes first on ``sys.path`` here and on ``PYTHONPATH`` for ``dg dev``, and the report says
where this process and the code server loaded ``bedrock_assets`` from.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TAG_PIPELINE = "bedrock_assets/pipeline"
TAG_STAGE = "bedrock_assets/stage"
TAG_SHARDS = "bedrock_assets/shards"
POLL_SECONDS = 1.0
MIN_GAP_SECONDS = 1.0


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uptime unavailable"


# ---- what was measured -------------------------------------------------------------------------


@dataclass
class RunRow:
    run_id: str
    job: str
    pipeline: str
    stage: str
    shards: str
    status: str
    created: float
    launched: float | None  # RUN_STARTING: the run coordinator dequeued it and the launcher started its process
    started: float | None  # RUN_START: the run worker is up and executing
    ended: float | None
    backfill: str = ""
    sensor: str = ""  # the dagster/sensor_name tag
    requested_by: str = ""

    @property
    def span(self) -> tuple[float, float] | None:
        """When its worker started and when it ended (None: it did not do both)."""
        return (self.started, self.ended) if self.started is not None and self.ended is not None else None


@dataclass
class TickRow:
    sensor: str
    time: float
    end: float | None
    status: str
    run_ids: list[str]
    requested: str
    skip_reason: str
    error: str = ""


@dataclass
class JobRow:
    name: str
    status: str
    submitted: float
    ended: float | None


@dataclass
class Measurement:
    pipeline: str
    rows: int
    project_root: Path
    home: Path
    local_module: str
    code_server_origin: str
    load_before: str
    t_dg_start: float
    t_ready: float
    t_daemons: float
    t_click: float
    click_run_id: str
    t_result: float | None = None
    gave_up: str = ""
    t_detected: float | None = None
    load_after: str = ""
    runs: list[RunRow] = field(default_factory=list)
    ticks: list[TickRow] = field(default_factory=list)
    other_ticks: dict[str, int] = field(default_factory=dict)
    jobs: list[JobRow] = field(default_factory=list)
    backfills: dict[str, float] = field(default_factory=dict)  # id -> created


# ---- the project under test -------------------------------------------------------------------


def use_project(root: Path) -> dict[str, str]:
    """Import ``bedrock_assets`` from ``root`` here, and the env that makes ``dg dev`` do the same."""
    if root == ROOT:
        return {}
    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "bedrock_assets" or m.startswith("bedrock_assets.")]:
        del sys.modules[name]
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}


def start_stack(home: Path, rows: int, time_scale: float, error_rate: float) -> Any:
    import boto3

    from bedrock_assets.local_stack import FaultConfig, LocalStack
    from bedrock_assets.sample.seed import seed_sample

    faults = FaultConfig(record_error_rate=error_rate)
    stack = LocalStack(port=free_port(), state_dir=home / "local_stack", time_scale=time_scale, faults=faults)
    stack.start()
    os.environ.update(stack.env())
    say(f"local stack on {stack.endpoint_url}; seeding {rows} rows")
    seed_sample(boto3.client("s3"), rows=rows)
    return stack


def start_dg(root: Path, dagster_home: Path, port: int, env_extra: Mapping[str, str], log: Path) -> subprocess.Popen:
    """``dg dev -p PORT`` the way ``bedrock-assets dev`` starts it (SIGINT left to its default)."""
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), VIRTUAL_ENV=sys.prefix, **env_extra)
    dg = Path(sys.executable).parent / "dg"
    say(f"dg dev -p {port} in {root} (log: {log})")
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(dg), "dev", "-p", str(port)],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


# ---- GraphQL, as the UI speaks it -------------------------------------------------------------

WORKSPACE = """query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { name repositories { name } }
  ... on PythonError { message } } } } } }"""
DAEMONS = "query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
ASSET_NODE = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
  jobNames assetChecksOrError { __typename ... on AssetChecks { checks { name jobNames } } }
  metadataEntries { label __typename ... on CodeReferencesMetadataEntry { codeReferences { __typename
  ... on LocalFileCodeReference { filePath } } } } } } }"""
LAUNCH = """mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) { __typename
  ... on LaunchRunSuccess { run { id pipelineName } } ... on PipelineNotFoundError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } }
  ... on PythonError { message } } }"""


def graphql(port: int, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def wait_for(what: str, probe: Callable[[], Any], proc: subprocess.Popen, timeout: float) -> Any:
    """``probe()``'s first truthy answer, polled every second (connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dg dev exited with {proc.returncode} while waiting for {what}")
        try:
            if answer := probe():
                return answer
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"no {what} within {timeout:.0f} s")


def loaded_repository(port: int) -> tuple[str, str] | None:
    """(location, repository) once the code location is loaded; a load error is raised."""
    for entry in graphql(port, WORKSPACE)["workspaceOrError"].get("locationEntries", []):
        location = entry.get("locationOrLoadError") or {}
        if location.get("__typename") == "PythonError":
            raise SystemExit(f"code location {entry['name']} failed to load: {location['message']}")
        if entry["loadStatus"] == "LOADED" and location.get("repositories"):
            return location["name"], location["repositories"][0]["name"]
    return None


def daemons_healthy(port: int) -> bool:
    statuses = graphql(port, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return bool(statuses) and all(s["healthy"] for s in statuses if s["required"])


def asset_node(port: int, path: Sequence[str]) -> dict:
    node = graphql(port, ASSET_NODE, {"key": {"path": list(path)}})["assetNodeOrError"]
    if node["__typename"] != "AssetNode":
        raise SystemExit(f"no asset {'/'.join(path)} in the code location: {node['__typename']}")
    return node


def code_origin(node: Mapping[str, Any]) -> str:
    """The files the code server says the asset comes from (its component's defs.yaml)."""
    paths = [
        ref["filePath"]
        for entry in node["metadataEntries"]
        if entry["__typename"] == "CodeReferencesMetadataEntry"
        for ref in entry["codeReferences"]
        if ref.get("filePath")
    ]
    return ", ".join(paths) or "(no code references)"


def click_materialize(port: int, repo: tuple[str, str], node: Mapping[str, Any], path: Sequence[str]) -> str:
    """The run the UI's "Materialize" on one unpartitioned asset launches (executionParamsForAssetJob)."""
    job = "__ASSET_JOB"
    checks = node["assetChecksOrError"].get("checks", [])
    params = {
        "mode": "default",
        "executionMetadata": {"tags": []},
        "runConfigData": "{}",
        "selector": {
            "repositoryLocationName": repo[0],
            "repositoryName": repo[1],
            "pipelineName": job,
            "assetSelection": [{"path": list(path)}],
            "assetCheckSelection": [
                {"name": c["name"], "assetKey": {"path": list(path)}}
                for c in checks
                if not c["jobNames"] or job in c["jobNames"]
            ],
        },
    }
    answer = graphql(port, LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    if answer["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"launch refused: {answer}")
    return answer["run"]["id"]


# ---- reading the instance ----------------------------------------------------------------------


def wait_result(instance: Any, key: Any, proc: subprocess.Popen, args: argparse.Namespace, m: Measurement) -> None:
    """Sets ``m.t_result`` to the first materialization of ``key``; or gives up (timeout, a failing sensor)."""
    last_note = time.time()
    while time.time() - m.t_click < args.timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"dg dev exited with {proc.returncode} before the result")
        record = instance.get_latest_materialization_event(key)
        if record is not None:
            m.t_result = float(record.timestamp)
            return
        if args.give_up_after and (error := failing(instance, args.completion_sensor, m.t_click, args.give_up_after)):
            m.gave_up = f"{args.completion_sensor} failed {args.give_up_after} ticks in a row: {error}"
            say(f"giving up: {m.gave_up}")
            return
        if time.time() - last_note >= 30:
            runs = instance.get_run_records()
            say(f"+{time.time() - m.t_click:.0f} s: {len(runs)} runs so far, waiting for {key.to_user_string()}")
            last_note = time.time()
        time.sleep(POLL_SECONDS)
    m.gave_up = f"timeout: no materialization within {args.timeout:.0f} s of the click"


def run_events(instance: Any, run_id: str) -> dict[str, float]:
    from dagster import DagsterEventType

    wanted = {DagsterEventType.RUN_STARTING, DagsterEventType.RUN_START}
    times: dict[str, float] = {}
    for entry in instance.all_logs(run_id, of_type=wanted):
        if entry.dagster_event is not None:
            times.setdefault(entry.dagster_event.event_type_value, float(entry.timestamp))
    return times


def collect_runs(instance: Any) -> list[RunRow]:
    rows = []
    for record in instance.get_run_records():
        run, events = record.dagster_run, run_events(instance, record.dagster_run.run_id)
        rows.append(
            RunRow(
                run_id=run.run_id,
                job=run.job_name,
                pipeline=run.tags.get(TAG_PIPELINE, ""),
                stage=run.tags.get(TAG_STAGE) or "+".join(sorted(k.path[-1] for k in run.asset_selection or ())),
                shards=run.tags.get(TAG_SHARDS) or partitions_of(run.tags),
                status=run.status.value,
                created=record.create_timestamp.timestamp(),
                launched=events.get("PIPELINE_STARTING"),
                started=record.start_time,
                ended=record.end_time,
                backfill=run.tags.get("dagster/backfill", ""),
                sensor=run.tags.get("dagster/sensor_name", ""),
            )
        )
    return sorted(rows, key=lambda r: r.created)


def partitions_of(tags: Mapping[str, str]) -> str:
    """The partition or partition range a run's tags name ('' for none)."""
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return start if start == end else f"{start}..{end}"
    return tags.get("dagster/partition", "")


def requested(tick: Any) -> str:
    """What a tick asked for: stage jobs (with partitions) or, for an automation tick, asset keys."""
    parts = []
    for request in tick.tick_data.run_requests or []:
        if request.job_name:
            where = request.partition_key or request.tags.get(TAG_SHARDS, "")
            parts.append(f"{request.job_name.split('__')[-1]}[{where}]" if where else request.job_name)
        elif request.asset_graph_subset is not None:
            parts.append(describe_subset(request.asset_graph_subset) + " (a backfill)")
        elif request.asset_selection:
            names = sorted({k.path[-1] for k in request.asset_selection})
            parts.append("+".join(names) + (f"[{request.partition_key}]" if request.partition_key else ""))
    return ", ".join(parts)


def describe_subset(subset: Any) -> str:
    """``jsonl_shards+batch_jobs[s00000..s00002]``: the assets of a requested subset and their partitions."""
    keys: dict[str, set[str]] = {}
    for akpk in subset.iterate_asset_partitions():
        keys.setdefault(akpk.asset_key.path[-1], set()).add(akpk.partition_key or "")
    partitions = sorted(set().union(*keys.values())) if keys else []
    where = partitions[0] if len(partitions) == 1 else f"{partitions[0]}..{partitions[-1]}" if partitions else ""
    return "+".join(sorted(keys)) + (f"[{where}]" if where else "")


def error_line(tick: Any) -> str:
    """A failed tick's root cause (the innermost exception's message), on one line."""
    error = tick.error
    if error is None:
        return ""
    while error.cause is not None:
        error = error.cause
    text = " ".join((error.message or "").split()) or "error"
    return text.removeprefix("Exception: ").removeprefix(f"Error in sensor {tick.instigator_name}: ")


def failing(instance: Any, sensor: str, since: float, count: int) -> str:
    """The error of ``sensor``'s last ``count`` ticks if each of them (all after ``since``) failed, else ''."""
    for state in instance.all_instigator_state():
        if state.instigator_name != sensor:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=count)
        if len(ticks) == count and all(t.status.value == "FAILURE" and t.timestamp > since for t in ticks):
            return error_line(ticks[0])
    return ""


def collect_ticks(instance: Any, sensors: Iterable[str]) -> tuple[list[TickRow], dict[str, int]]:
    """Every tick of the named sensors, and the number of ticks of every other instigator."""
    wanted, rows, others = set(sensors), [], {}
    for state in instance.all_instigator_state():
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        if state.instigator_name not in wanted:
            others[state.instigator_name] = len(ticks)
            continue
        for tick in ticks:
            rows.append(
                TickRow(
                    sensor=state.instigator_name,
                    time=tick.timestamp,
                    end=tick.end_timestamp,
                    status=tick.status.value,
                    run_ids=list(tick.run_ids),
                    requested=requested(tick),
                    skip_reason=tick.skip_reason or "",
                    error=error_line(tick),
                )
            )
    return sorted(rows, key=lambda t: t.time), others


def attribute_runs(m: Measurement) -> None:
    """Each run's origin: the click, or the tick that launched it (directly, or through a backfill it requested)."""
    by_id = {run_id: tick for tick in m.ticks for run_id in tick.run_ids}
    for run in m.runs:
        tick = by_id.get(run.run_id) or by_id.get(run.backfill)
        label = tick_label(tick, m.pipeline, m.t_click) if tick else run.sensor or "?"
        if run.backfill and run.backfill in m.backfills:
            label += f" > backfill@{m.backfills[run.backfill] - m.t_click:+.1f}"
        run.requested_by = "click" if run.run_id == m.click_run_id else label


def collect_jobs(stack: Any) -> list[JobRow]:
    """The emulated Bedrock batch jobs, from ListModelInvocationJobs."""
    client, rows, token = stack.client("bedrock"), [], None
    while True:
        page = client.list_model_invocation_jobs(maxResults=1000, **({"nextToken": token} if token else {}))
        for job in page.get("invocationJobSummaries", []):
            end = job.get("endTime")
            rows.append(JobRow(job["jobName"], job["status"], job["submitTime"].timestamp(), end and end.timestamp()))
        if not (token := page.get("nextToken")):
            return sorted(rows, key=lambda j: j.submitted)


# ---- the report ---------------------------------------------------------------------------------


def rel(t: float | None, t0: float) -> str:
    return "-" if t is None else f"{t - t0:+.1f}"


def tick_label(tick: TickRow, pipeline: str, t0: float) -> str:
    return f"{tick.sensor.removeprefix(pipeline + '__')}@{tick.time - t0:+.1f}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    rows = [list(map(str, r)) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    line = "  ".join(f"{{:{w}}}" for w in widths)
    return [line.format(*header).rstrip(), line.format(*("-" * w for w in widths)).rstrip()] + [
        line.format(*r).rstrip() for r in rows
    ]


def runs_section(m: Measurement) -> list[str]:
    t0 = m.t_click

    def span(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None else f"{b - a:.1f}"

    header = ("run", "job", "stage", "shards", "requested by", "created", "queue", "boot", "start", "end", "exec")
    rows = [
        (r.run_id[:8], r.job, r.stage or "-", r.shards or "-", r.requested_by, rel(r.created, t0))
        + (span(r.created, r.launched), span(r.launched, r.started), rel(r.started, t0), rel(r.ended, t0))
        + (span(r.started, r.ended) + ("" if r.status == "SUCCESS" else f" {r.status}"),)
        for r in m.runs
    ]
    lines = [
        f"Runs ({len(m.runs)}; seconds, times relative to the click; queue = created -> RUN_STARTING (run coordinator "
        "dequeue + launch), boot = RUN_STARTING -> RUN_START (run worker process up), exec = RUN_START -> end)"
    ]
    return lines + table(header, rows)


def ticks_section(m: Measurement) -> list[str]:
    t0 = m.t_click
    rows = [
        (
            t.sensor.removeprefix(m.pipeline + "__"),
            rel(t.time, t0),
            "-" if t.end is None else f"{t.end - t.time:.1f}",
            t.status,
            len(t.run_ids),
            t.requested or "-",
            (t.error or t.skip_reason or "")[:160],
        )
        for t in m.ticks
        if m.t_result is None or t.time <= m.t_result + 5
    ]
    lines = [f"Sensor ticks of {m.pipeline}'s automation and completion sensors ({len(rows)} up to the result)"]
    return lines + table(("sensor", "tick", "took", "status", "runs", "requested", "error / skip reason"), rows)


def tick_interval_lines(m: Measurement) -> list[str]:
    lines = []
    for sensor in sorted({t.sensor for t in m.ticks}):
        times = [t.time for t in m.ticks if t.sensor == sensor and (m.t_result is None or t.time <= m.t_result)]
        after = [t for t in times if t >= m.t_click]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        first = f"first tick after the click at +{after[0] - m.t_click:.1f} s" if after else "no tick after the click"
        spread = (
            f"interval min/median/max {min(gaps):.1f}/{statistics.median(gaps):.1f}/{max(gaps):.1f} s"
            if gaps
            else "one tick"
        )
        lines.append(f"  {sensor}: {len(after)} ticks after the click; {first}; {spread}")
    return lines


def jobs_section(m: Measurement) -> list[str]:
    t0 = m.t_click
    rows = [
        (
            j.name,
            j.status,
            rel(j.submitted, t0),
            rel(j.ended, t0),
            "-" if j.ended is None else f"{j.ended - j.submitted:.1f}",
        )
        for j in m.jobs
    ]
    return [f"Emulated Bedrock batch jobs ({len(m.jobs)})"] + table(("job", "status", "submit", "end", "took"), rows)


CATEGORIES = (
    "a run executing",
    "a run queued or booting",
    "a backfill waiting for its runs",
    "a Bedrock job in flight",
    "nothing in flight (waiting for a tick)",
)


def segments(m: Measurement) -> list[tuple[float, float, str]]:
    """[click, result] cut into pieces, each labelled with the first of CATEGORIES that holds in it."""
    end = m.t_result or m.t_detected or max([r.ended or r.created for r in m.runs] + [m.t_click])
    runs = [r for r in m.runs if r.pipeline == m.pipeline or r.run_id == m.click_run_id]
    executing = [(r.started, r.ended or end) for r in runs if r.started]
    pending = [(r.created, r.started or r.ended or end) for r in runs]
    in_flight = [(j.submitted, j.ended or end) for j in m.jobs]
    first_run = {r.backfill: r.created for r in sorted(runs, key=lambda r: -r.created) if r.backfill}
    backfills = [(t, first_run.get(b, end)) for b, t in m.backfills.items()]
    kinds = (executing, pending, backfills, in_flight)
    points = sorted({m.t_click, end, *(p for ivs in kinds for iv in ivs for p in iv if m.t_click < p < end)})
    pieces: list[tuple[float, float, str]] = []
    for a, b in zip(points, points[1:], strict=False):
        mid = (a + b) / 2
        holds = [any(lo <= mid < hi for lo, hi in ivs) for ivs in kinds]
        label = CATEGORIES[holds.index(True)] if any(holds) else CATEGORIES[-1]
        if pieces and pieces[-1][2] == label:
            pieces[-1] = (pieces[-1][0], b, label)
        else:
            pieces.append((a, b, label))
    return pieces


def breakdown_section(m: Measurement) -> list[str]:
    pieces = segments(m)
    total = sum(b - a for a, b, _ in pieces) or 1.0
    until = "result" if m.t_result is not None else "giving up"
    lines = [f"Where the wall time goes (click -> {until}; each instant counted once, in this order of precedence)"]
    for category in CATEGORIES:
        spent = sum(b - a for a, b, label in pieces if label == category)
        lines.append(f"  {category:40} {spent:7.1f} s  {spent / total:5.1%}")
    idle = [(a, b, label) for a, b, label in pieces if label != CATEGORIES[0] and b - a >= MIN_GAP_SECONDS]
    lines.append(f"Gaps with no run of {m.pipeline} executing (>= {MIN_GAP_SECONDS:.0f} s), and what filled them")
    lines += table(
        ("from", "to", "s", "state"),
        ((rel(a, m.t_click), rel(b, m.t_click), f"{b - a:.1f}", label) for a, b, label in idle),
    )
    return lines


def summary_lines(m: Measurement) -> list[str]:
    ours = [r for r in m.runs if r.pipeline == m.pipeline or r.run_id == m.click_run_id]
    stages: dict[str, int] = {}
    for r in ours:
        stages[r.stage or r.job] = stages.get(r.stage or r.job, 0) + 1
    launches = [r.started - r.created for r in ours if r.started]
    last = max((r.ended for r in ours if r.ended), default=None)
    execs = [r.ended - r.started for r in ours if r.started and r.ended]
    after = [t for t in m.ticks if m.t_click <= t.time <= (m.t_result or float("inf"))]
    productive = [t for t in after if t.run_ids]
    return [
        f"Runs of {m.pipeline} (with the click): {len(ours)} ({', '.join(f'{k} {v}' for k, v in stages.items())}); "
        f"other runs: {len(m.runs) - len(ours)}",
        f"  created -> started: total {sum(launches):.1f} s, mean {statistics.fmean(launches) if launches else 0:.1f} s;"
        f" executing: total {sum(execs):.1f} s",
        f"Last run of {m.pipeline} ended at {rel(last, m.t_click)} s",
        f"Ticks after the click up to the result: {len(after)}, of which {len(productive)} launched runs "
        "(or a backfill)",
        *tick_interval_lines(m),
        "Ticks of every other sensor since dg dev started: "
        + (", ".join(f"{k} {v}" for k, v in sorted(m.other_ticks.items())) or "none"),
    ]


def header_lines(m: Measurement) -> list[str]:
    result = (
        f"{m.t_result - m.t_click:.1f} s (merged_dataset materialized; seen by the poll at +{m.t_detected - m.t_click:.1f} s)"
        if m.t_result is not None and m.t_detected is not None
        else f"NOT REACHED ({m.gave_up})"
    )
    return [
        f"daemon path: {m.pipeline}, {m.rows} rows, project root {m.project_root}",
        f"  bedrock_assets here: {m.local_module}",
        f"  code server's {m.pipeline} component: {m.code_server_origin}",
        f"  home: {m.home}",
        f"  load before: {m.load_before}",
        f"  load after:  {m.load_after}",
        f"dg dev start -> GraphQL with the code location: {m.t_ready - m.t_dg_start:.1f} s; -> daemons healthy: "
        f"{m.t_daemons - m.t_dg_start:.1f} s; -> click: {m.t_click - m.t_dg_start:.1f} s",
        f"CLICK -> RESULT: {result}",
    ]


def report(m: Measurement) -> str:
    sections = [
        header_lines(m),
        summary_lines(m),
        breakdown_section(m),
        runs_section(m),
        ticks_section(m),
        jobs_section(m),
    ]
    return "\n\n".join("\n".join(s) for s in sections)


# ---- the measurement ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--project-root", type=Path, default=ROOT, help="the checkout dg dev runs in (default: %(default)s)")
    p.add_argument("--rows", type=int, default=3000, help="rows of the sample dataset (default: %(default)s)")
    p.add_argument("--pipeline", default="cot_answers", help="the pipeline clicked (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds from the click (default: %(default)s)")
    p.add_argument("--home", type=Path, help="home directory (default: a new temporary one)")
    p.add_argument("--time-scale", type=float, default=1.0, help="emulator seconds per job state (default: 1.0)")
    p.add_argument("--error-rate", type=float, default=0.01, help="emulated record error rate (default: 0.01)")
    p.add_argument("--automation-sensor", help="its name (default: <pipeline>__automation)")
    p.add_argument("--completion-sensor", help="its name (default: <pipeline>__job_completion)")
    p.add_argument(
        "--give-up-after",
        type=int,
        default=3,
        help="stop waiting once the completion sensor failed this many ticks in a row after the click (0: never; "
        "default: %(default)s)",
    )
    p.add_argument("--startup-timeout", type=float, default=300.0, help="for dg dev to serve (default: 300)")
    return p.parse_args(argv)


def measure(args: argparse.Namespace, home: Path) -> Measurement:
    """Stack, dg dev, the click, the wait for merged_dataset; dg dev and the stack are stopped in any case."""
    from bedrock_assets.cli import _stop

    stack = start_stack(home, args.rows, args.time_scale, args.error_rate)
    proc = None
    try:
        proc, port, m = start_ui(args, home)
        run_to_result(args, m, port, proc, stack)
        return m
    finally:
        if proc is not None:
            say("stopping dg dev (SIGINT)")
            _stop(proc)
        stack.stop()


def start_ui(args: argparse.Namespace, home: Path) -> tuple[subprocess.Popen, int, Measurement]:
    """``dg dev`` serving the code location with healthy daemons: the moment a person would click."""
    import bedrock_assets
    from bedrock_assets.cli import _dagster_home, _stop

    port, t_dg_start = free_port(), time.time()
    proc = start_dg(args.project_root, _dagster_home(home), port, args.env_extra, home / "dg_dev.log")
    try:
        args.repo = wait_for("code location", lambda: loaded_repository(port), proc, args.startup_timeout)
        t_ready = time.time()
        wait_for("healthy daemons", lambda: daemons_healthy(port), proc, args.startup_timeout)
    except BaseException:
        _stop(proc)
        raise
    m = Measurement(
        pipeline=args.pipeline,
        rows=args.rows,
        project_root=args.project_root,
        home=home,
        local_module=str(bedrock_assets.__file__),
        code_server_origin="",
        load_before=load_average(),
        t_dg_start=t_dg_start,
        t_ready=t_ready,
        t_daemons=time.time(),
        t_click=0.0,
        click_run_id="",
    )
    return proc, port, m


def run_to_result(args: argparse.Namespace, m: Measurement, port: int, proc: subprocess.Popen, stack: Any) -> None:
    from dagster import AssetKey, DagsterInstance

    raw = [args.pipeline, "raw_dataset"]
    node = asset_node(port, raw)
    m.code_server_origin = code_origin(node)
    m.t_click = time.time()
    m.click_run_id = click_materialize(port, args.repo, node, raw)
    say(f"clicked Materialize on {'/'.join(raw)}: run {m.click_run_id}")
    instance = DagsterInstance.from_config(str(m.home / "dagster"))
    try:
        wait_result(instance, AssetKey([args.pipeline, "merged_dataset"]), proc, args, m)
        m.t_detected = time.time()
        say(f"result after {(m.t_result or m.t_detected) - m.t_click:.1f} s; collecting")
        settle(instance, args.pipeline)
        collect(m, instance, stack, args)
    finally:
        instance.dispose()


def settle(instance: Any, pipeline: str, limit: float = 30.0) -> None:
    """Give the pipeline's runs still in flight (the one that materialized the result) up to ``limit`` s to end."""
    from dagster import DagsterRunStatus, RunsFilter

    active = [DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        runs = instance.get_run_records(RunsFilter(statuses=active, tags={TAG_PIPELINE: pipeline}))
        if not runs:
            return
        time.sleep(POLL_SECONDS)


def collect(m: Measurement, instance: Any, stack: Any, args: argparse.Namespace) -> None:
    sensors = (args.automation_sensor, args.completion_sensor)
    m.load_after = load_average()
    m.runs = collect_runs(instance)
    m.ticks, m.other_ticks = collect_ticks(instance, sensors)
    m.backfills = {b.backfill_id: float(b.backfill_timestamp) for b in instance.get_backfills()}
    attribute_runs(m)
    m.jobs = collect_jobs(stack)


def prepared(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Path]:
    """The arguments with their derived defaults, and the home directory (made)."""
    args = parse_args(argv)
    args.automation_sensor = args.automation_sensor or f"{args.pipeline}__automation"
    args.completion_sensor = args.completion_sensor or f"{args.pipeline}__job_completion"
    args.project_root = args.project_root.resolve()
    args.env_extra = use_project(args.project_root)
    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="daemon_path-"))
    home.mkdir(parents=True, exist_ok=True)
    return args, home


def main(argv: Sequence[str] | None = None) -> int:
    m = measure(*prepared(argv))
    print(report(m))
    return 0 if m.t_result is not None else 1


if __name__ == "__main__":
    sys.exit(main())
