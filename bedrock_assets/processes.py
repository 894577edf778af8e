"""Which process holds something: a submission claim in the ledger, a stage run in the Dagster instance.

``OWNER`` names this process (host, pid and the process's start time, so a reused pid is another
owner). Whoever finds something held by an owner on the same host can tell at once whether that
process still lives; for an owner on another host it cannot, and relies on a lease instead.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from bedrock_assets.keys import TAG_OWNER, TAG_OWNER_GONE


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks after boot (Linux), or None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


HOST = socket.gethostname()


def owner_of(pid: int) -> str:
    return f"{HOST}:{pid}:{_started(pid) or int(time.time() * 1000)}"


OWNER = owner_of(os.getpid())


def run_worker() -> str:
    """The owner of the run this process executes steps of: this process, or (a step process of Dagster's
    multiprocess executor, which starts each step with multiprocessing) the run worker that started it. A step
    process ends with its step; the run goes on in its run worker."""
    parent = multiprocessing.parent_process()
    return owner_of(parent.pid) if parent is not None and parent.pid is not None else OWNER


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process ``owner`` names still runs: True or False on this host, None elsewhere (or unknown)."""
    if not owner:
        return None
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != HOST or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    now_started = _started(pid)
    return now_started is None or now_started == started  # a reused pid is another process


def own_run(instance: DagsterInstance | None, run: DagsterRun | None) -> None:
    """Mark the run as executed by its run worker (once; the headless runner's runs carry the tag from the start)."""
    owner = run_worker()
    if instance is not None and run is not None and run.tags.get(TAG_OWNER) != owner:
        instance.add_run_tags(run.run_id, {TAG_OWNER: owner})


RUNNING = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def release_dead_runs(instance: DagsterInstance, job_names: Sequence[str]) -> list[DagsterRun]:
    """Mark failed the running runs of these jobs whose process is gone (killed on this host): they hold their
    shards no longer, and their work is requested again. Runs of other hosts are left to Dagster's run
    monitoring (the deployment's run launcher checks its run workers' health)."""
    released = []
    for job_name in job_names:
        for run in instance.get_runs(RunsFilter(job_name=job_name, statuses=RUNNING)):
            owner = run.tags.get(TAG_OWNER)
            if owner_alive(owner) is not False:
                continue
            instance.add_run_tags(run.run_id, {TAG_OWNER_GONE: "true"})
            instance.report_run_failed(
                run, f"the process that ran this run ({owner}) is gone (killed?); its shards are requested again"
            )
            released.append(run)
    return released


def runs_lost(instance: DagsterInstance, job_names: Sequence[str]) -> list[DagsterRun]:
    """Runs of these jobs that were marked failed because their process was gone."""
    return [
        run
        for job_name in job_names
        for run in instance.get_runs(
            RunsFilter(job_name=job_name, statuses=[DagsterRunStatus.FAILURE], tags={TAG_OWNER_GONE: "true"})
        )
    ]
