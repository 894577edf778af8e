"""Which process holds a claim or a run: alive or gone on this host, unknown elsewhere; a multiprocess step's
run is its run worker's."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

from bedrock_assets.processes import HOST, OWNER, owner_alive, owner_of, run_worker


def _run_worker_of_a_child(queue: multiprocessing.Queue) -> None:
    queue.put((run_worker(), owner_of(multiprocessing.current_process().pid or 0)))


def test_an_owner_is_alive_gone_or_unknown():
    assert owner_alive(OWNER) is True
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert owner_alive(f"{HOST}:{gone.stdout.strip()}:1") is False
    assert owner_alive("another-host:1:1") is None and owner_alive(None) is None
    assert owner_alive(f"{OWNER.rsplit(':', 1)[0]}:0") is False  # the same pid, started at another time


def test_a_step_process_started_by_multiprocessing_names_its_run_worker_as_the_runs_owner():
    assert run_worker() == OWNER  # the run worker itself (in-process executor, the headless runner)
    context = multiprocessing.get_context("spawn")  # Dagster's multiprocess executor's default start method
    queue = context.Queue()
    child = context.Process(target=_run_worker_of_a_child, args=(queue,))
    child.start()
    owner, itself = queue.get(timeout=60)
    child.join(60)
    assert owner == OWNER and itself != OWNER  # the run is ours; the step process ends with its step
