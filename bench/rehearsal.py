"""The production rehearsal: a pipeline run the way a deployment runs it, on this machine.

    python -m bench.rehearsal [--rows 4000] [--max-records 100] [--executor in_process|multiprocess]
                              [--local-copies-off] [--kill-after-jobs 1] [--time-scale 1.0] [--timeout 900]
                              [--home DIR]

Every part is a separate process, as in deploy/: PostgreSQL (the server binary pip installs with
``pgserver``), the instance of deploy/dagster.yaml exactly as shipped (Postgres storage, the
QueuedRunCoordinator with its tag limits, run monitoring; DefaultRunLauncher: a process per run), a gRPC
code server (``dagster api grpc``) serving a project of one pipeline, ``dagster-daemon run`` and
``dagster-webserver`` on deploy/workspace.yaml; the local stack (in this process) stands for AWS. One
click on raw_dataset (the UI's GraphQL mutation), then only the daemon's sensors and automation. Once
``--kill-after-jobs`` Bedrock jobs exist the daemon is killed with SIGKILL, and started again a few
seconds later. It reports the timeline (processes, runs with their process ids, the kill and the restart)
and what a deployment must never do: a row merged twice or not at all, a job created twice for a shard.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.daemon_path import (
    JobRow,
    RunRow,
    asset_node,
    click_materialize,
    collect_jobs,
    collect_runs,
    daemons_healthy,
    free_port,
    load_average,
    loaded_repository,
    say,
    start_stack,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PIPELINE = "rehearsal"
LOCATION = "bedrock_pipelines"  # deploy/workspace.yaml's location_name
BIN = Path(sys.executable).parent
BASICS = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "VIRTUAL_ENV"}
LEDGER_TABLE = "rehearsal-jobs"
PID = re.compile(r"\(pid: (\d+)\)")


@dataclass
class Process:
    """One long-running part of the deployment."""

    name: str
    popen: subprocess.Popen
    log: Path
    started: float

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 15 s."""
        if self.popen.poll() is not None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(5)


@dataclass
class Rehearsal:
    rows: int
    shards: int
    executor: str
    local_copies: bool
    home: Path
    load_before: str
    processes: dict[str, list[int]] = field(default_factory=dict)  # name -> pids, in start order
    t_click: float = 0.0
    t_kill: float | None = None
    t_restart: float | None = None
    jobs_at_kill: int = 0
    t_result: float | None = None
    gave_up: str = ""
    load_after: str = ""
    runs: list[RunRow] = field(default_factory=list)
    run_pids: dict[str, int] = field(default_factory=dict)  # run id -> the pid that executed its steps
    jobs: list[JobRow] = field(default_factory=list)
    create_calls: int = 0
    attempts_per_shard: dict[str, int] = field(default_factory=dict)
    merged_rows: int = 0
    merged_unique_ids: int = 0

    @property
    def concurrent(self) -> list[tuple[RunRow, RunRow]]:
        """Pairs of runs that executed at the same time, in different processes."""
        done = [(r, span) for r in self.runs if (span := r.span) is not None]
        return [
            (a, b)
            for i, (a, (a_start, a_end)) in enumerate(done)
            for b, (b_start, b_end) in done[i + 1 :]
            if a_start < b_end and b_start < a_end and self.run_pids.get(a.run_id) != self.run_pids.get(b.run_id)
        ]


# ---- the parts -----------------------------------------------------------------------------------


class Postgres:
    """A PostgreSQL server from pgserver's binaries, listening on 127.0.0.1 (as a database host would)."""

    def __init__(self, home: Path) -> None:
        import pgserver

        self.data = home / "pg"
        self.port = free_port()
        # get_server initializes the data directory (as a non-root user when run as root) and starts a
        # socket-only server; it is restarted here listening on TCP, with the database made
        server = pgserver.get_server(self.data, cleanup_mode=None)
        server.psql("CREATE DATABASE dagster;")
        self.user = server.system_user
        self._ctl(["-m", "fast", "stop"])
        sockets = Path(tempfile.mkdtemp(prefix="pg-"))  # short: a socket path has at most 107 characters
        sockets.chmod(0o777)  # the server's own user (pgserver's, when run as root) writes there
        self._ctl(["-o", f"-h 127.0.0.1 -p {self.port} -k {sockets}", "-l", str(self.data / "log"), "start"])

    def _ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", *args], pgdata=self.data, user=self.user, timeout=60)

    def env(self) -> dict[str, str]:
        """deploy/dagster.yaml's Postgres settings."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": "dagster",
        }

    def stop(self) -> None:
        try:
            self._ctl(["-m", "fast", "stop"])
        except (subprocess.SubprocessError, OSError) as e:
            say(f"postgres stop: {e}")


DEFS_YAML = """type: bedrock_assets.components.BedrockBatchPipeline
attributes:
  source:
    uri: s3://bedrock-assets-demo/raw/simplecot_sample.parquet
  model:
    id: anthropic.claude-3-5-haiku-20241022-v1:0
  prompt:
    template: "Task: {task}\\n\\n{source}"
  output_uri: s3://bedrock-assets-demo/pipelines/rehearsal
  shards:
    max_records: %(max_records)d
  role_arn: arn:aws:iam::123456789012:role/BedrockBatchInference
  execution:
    executor: %(executor)s
"""

RESOURCES_PY = """import dagster as dg

from bedrock_assets.bedrock.resource import BedrockBatchResource
from bedrock_assets.resources import bedrock_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=bedrock_resources(bedrock=BedrockBatchResource(poll_seconds=2.0)))
"""

DEFINITIONS_PY = """from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

PYPROJECT = """[project]
name = "rehearsal_project"
version = "0.0.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "rehearsal_project"
"""


def write_project(home: Path, args: argparse.Namespace) -> Path:
    """A user's Dagster project of one pipeline: defs/<pipeline>/defs.yaml and defs/resources.py."""
    root = home / "project"
    package = root / "rehearsal_project"
    (package / "defs" / PIPELINE).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS_PY)
    (package / "defs" / "__init__.py").write_text("")
    (package / "defs" / "resources.py").write_text(RESOURCES_PY)
    settings = {"max_records": args.max_records, "executor": args.executor}
    (package / "defs" / PIPELINE / "defs.yaml").write_text(DEFS_YAML % settings)
    return root


def start(name: str, command: Sequence[str], env: Mapping[str, str], cwd: Path, home: Path) -> Process:
    log = home / "logs" / f"{name}-{int(time.time() * 1000)}.log"
    log.parent.mkdir(exist_ok=True)
    say(f"starting {name}: {' '.join(command)} (log: {log})")
    with open(log, "w") as out:
        popen = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(name, popen, log, time.time())


def serving(health_check: Sequence[str]) -> bool:
    """The code server answers its health check (what a readiness probe runs)."""
    return subprocess.run(list(health_check), capture_output=True, timeout=30).returncode == 0


def daemon(env: Mapping[str, str], home: Path) -> Process:
    return start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(DEPLOY / "workspace.yaml")], env, home, home)


# ---- the rehearsal ------------------------------------------------------------------------------


def environment(
    home: Path, pg: Postgres, args: argparse.Namespace, code_port: int, aws: Mapping[str, str]
) -> dict[str, str]:
    """What every Dagster process of the deployment sees (the stack's AWS settings are in os.environ)."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())  # as shipped
    # a clean environment, as a container has: only the system's basics, the stack's AWS settings and ours
    env = {k: v for k, v in os.environ.items() if k in BASICS}
    env.update(aws, DAGSTER_HOME=str(dagster_home), BEDROCK_ASSETS_LEDGER_TABLE=LEDGER_TABLE, **pg.env())
    env.update(BEDROCK_ASSETS_CODE_SERVER_HOST="127.0.0.1", BEDROCK_ASSETS_CODE_SERVER_PORT=str(code_port))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(home / "project"), str(ROOT), env.get("PYTHONPATH")) if p)
    if args.local_copies_off:
        env["BEDROCK_ASSETS_LOCAL_COPIES_MB"] = "0"
    return env


def rehearse(args: argparse.Namespace, home: Path) -> Rehearsal:
    """Start every part, click, kill and restart the daemon, wait for the result; everything stopped after."""
    r = Rehearsal(
        args.rows, -(-args.rows // args.max_records), args.executor, not args.local_copies_off, home, load_average()
    )
    stack = start_stack(home, args.rows, args.time_scale, 0.0)
    pg, processes = None, []
    try:
        pg = Postgres(home)
        code_port, web_port = free_port(), free_port()
        env = environment(home, pg, args, code_port, stack.env())
        os.environ.update(pg.env())  # this process reads the same instance
        project = write_project(home, args)
        grpc = [str(BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(code_port)]
        processes.append(start("code_server", [*grpc, "-m", "rehearsal_project.definitions"], env, project, home))
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(code_port)]
        wait_for("the code server", lambda: serving(health), processes[0].popen, args.startup_timeout)
        web = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port)]
        processes.append(start("webserver", [*web, "-w", str(DEPLOY / "workspace.yaml")], env, home, home))
        processes.append(daemon(env, home))
        repo = wait_for("code location", lambda: loaded_repository(web_port), processes[1].popen, args.startup_timeout)
        wait_for("healthy daemons", lambda: daemons_healthy(web_port), processes[1].popen, args.startup_timeout)
        node = asset_node(web_port, [PIPELINE, "raw_dataset"])
        r.t_click = time.time()
        click_materialize(web_port, repo, node, [PIPELINE, "raw_dataset"])
        say("clicked Materialize on raw_dataset")
        follow(r, args, env, stack, processes)
        collect(r, env, stack)
        return r
    finally:
        r.processes = {}
        for p in processes:
            r.processes.setdefault(p.name, []).append(p.popen.pid)
            p.stop()
        if pg is not None:
            pg.stop()
        stack.stop()


def follow(r: Rehearsal, args: argparse.Namespace, env: Mapping[str, str], stack: Any, processes: list) -> None:
    """Until merged_dataset is materialized: the daemon killed once enough jobs exist, and started again."""
    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    key = AssetKey([PIPELINE, "merged_dataset"])
    try:
        while time.time() - r.t_click < args.timeout:
            if (record := instance.get_latest_materialization_event(key)) is not None:
                r.t_result = float(record.timestamp)
                say(f"merged_dataset materialized {r.t_result - r.t_click:.1f} s after the click")
                return
            jobs = stack.emulator.job_count()
            if r.t_kill is None and jobs >= args.kill_after_jobs:
                r.t_kill, r.jobs_at_kill = time.time(), jobs
                say(f"{jobs} jobs exist: SIGKILL to the daemon (pid {processes[-1].popen.pid})")
                processes[-1].kill()
            elif r.t_kill is not None and r.t_restart is None and time.time() - r.t_kill >= args.down_seconds:
                processes.append(daemon(env, r.home))
                r.t_restart = time.time()
            time.sleep(1.0)
        r.gave_up = f"no merged_dataset within {args.timeout:.0f} s of the click"
    finally:
        instance.dispose()


def collect(r: Rehearsal, env: Mapping[str, str], stack: Any) -> None:
    """Runs (and the process of each), Bedrock jobs, the ledger's attempts and the merged rows."""
    from dagster import DagsterInstance

    from bedrock_assets.graph.merged_dataset import read_merged_dataset
    from bedrock_assets.ledger import JobLedgerResource

    r.load_after = load_average()
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        settle(instance)
        r.runs = collect_runs(instance)
        r.run_pids = {run.run_id: pid for run in r.runs if (pid := run_pid(instance, run.run_id)) is not None}
    finally:
        instance.dispose()
    r.jobs = collect_jobs(stack)
    r.create_calls = stack.emulator.control_plane_calls().get("CreateModelInvocationJob", 0)
    attempts = JobLedgerResource(table_name=LEDGER_TABLE).get_ledger().attempts_of(PIPELINE)
    for a in attempts:
        r.attempts_per_shard[a.shard] = r.attempts_per_shard.get(a.shard, 0) + 1
    if r.t_result is not None:
        merged = read_merged_dataset(r.home / "project" / "rehearsal_project" / "defs" / PIPELINE, ["record_id"])
        r.merged_rows, r.merged_unique_ids = len(merged), merged["record_id"].nunique()


def settle(instance: Any, limit: float = 60.0) -> None:
    """Up to ``limit`` s for runs still queued or in progress to end."""
    from dagster import DagsterRunStatus, RunsFilter

    active = [DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and instance.get_run_records(RunsFilter(statuses=active)):
        time.sleep(1.0)


def run_pid(instance: Any, run_id: str) -> int | None:
    """The process that executed the run's steps ("Executing steps in process (pid: N)" or the multiprocess
    executor's parent)."""
    from dagster import DagsterEventType

    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        if "Executing steps" in (entry.message or "") and (match := PID.search(entry.message)):
            return int(match.group(1))
    return None


# ---- the report ---------------------------------------------------------------------------------


def report(r: Rehearsal) -> str:
    t0 = r.t_click

    def at(t: float | None) -> str:
        return "-" if t is None else f"{t - t0:+7.1f}"

    lines = [
        f"rehearsal: {r.rows} rows in {r.shards} shards, stage executor {r.executor}, "
        f"local copies {'on' if r.local_copies else 'off'} (home {r.home})",
        f"load before: {r.load_before}",
        "processes: " + ", ".join(f"{name} {pids}" for name, pids in r.processes.items()),
        f"click at 0.0 s; daemon SIGKILL at {at(r.t_kill)} s with {r.jobs_at_kill} jobs created, "
        f"restarted at {at(r.t_restart)} s; merged_dataset at {at(r.t_result)} s {r.gave_up}".rstrip(),
        f"{len(r.runs)} runs in {len(set(r.run_pids.values()))} processes; {len(r.concurrent)} pairs ran at once "
        "in different processes",
        f"{len(r.jobs)} Bedrock jobs, {r.create_calls} CreateModelInvocationJob calls; attempts per shard: "
        f"{sorted(set(r.attempts_per_shard.values()))}; merged rows {r.merged_rows} ({r.merged_unique_ids} ids)",
        f"load after: {r.load_after}",
        "",
        "   start     end  pid      status   stage    shards",
    ]
    for run in r.runs:
        lines.append(
            f"{at(run.started)} {at(run.ended)}  {r.run_pids.get(run.run_id, '-')!s:<8} {run.status:<8} "
            f"{run.stage:<8} {run.shards}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--max-records", type=int, default=100, help="records per shard (100: 40 shards)")
    parser.add_argument("--executor", choices=["in_process", "multiprocess"], default="in_process")
    parser.add_argument("--local-copies-off", action="store_true")
    parser.add_argument("--kill-after-jobs", type=int, default=1, help="SIGKILL the daemon once this many jobs exist")
    parser.add_argument("--down-seconds", type=float, default=5.0, help="how long the daemon stays down")
    parser.add_argument("--time-scale", type=float, default=1.0, help="the emulator's job durations")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--json", action="store_true", help="print the measurement as JSON (the test reads it)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = (args.home or Path(tempfile.mkdtemp(prefix="rehearsal-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    r = rehearse(args, home)
    print(json.dumps(asdict(r), default=str) if args.json else report(r))
    return 0 if r.t_result is not None else 1


def from_json(text: str) -> Rehearsal:
    """A measurement ``--json`` printed."""
    data = json.loads(text)
    data["home"] = Path(data["home"])
    data["runs"] = [RunRow(**run) for run in data["runs"]]
    data["jobs"] = [JobRow(**job) for job in data["jobs"]]
    return Rehearsal(**data)


if __name__ == "__main__":
    sys.exit(main())
