"""The production rehearsal (bench.rehearsal): Postgres, deploy/dagster.yaml as shipped, a gRPC code server,
the daemon and the webserver as separate processes, a process per run; one click, the daemon SIGKILLed
mid-way and restarted, and the pipeline of 40 shards still ends with every row once and one job per shard."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bedrock_assets.bedrock.naming import CANARY_SHARD
from bench.rehearsal import BASICS, ROOT, Rehearsal, from_json


def shards_of(span: str) -> list[str]:
    """``s00000..s00015`` (or one key) as its shard keys."""
    first, _, last = span.partition("..")
    if not last:
        return [first]
    return [f"s{i:05d}" for i in range(int(first[1:]), int(last[1:]) + 1)]


def rehearsed(tmp_path, *options: str) -> Rehearsal:
    """The rehearsal in a process of its own, as a person runs it: nothing of this test process (its local
    stack, moto's in-process state, its environment) can reach it."""
    basics = {k: v for k, v in os.environ.items() if k in BASICS}
    command = [sys.executable, "-m", "bench.rehearsal", "--json", "--home", str(tmp_path), "--timeout", "900"]
    done = subprocess.run([*command, *options], capture_output=True, text=True, cwd=ROOT, env=basics, timeout=1500)
    assert done.stdout.strip(), done.stderr[-3000:]
    return from_json(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.local_stack  # its own, started by the rehearsal
@pytest.mark.parametrize(
    "options",
    [[], ["--executor", "multiprocess", "--local-copies-off"]],
    ids=["in_process-local_copies", "multiprocess-no_local_copies"],
)
def test_a_production_shaped_deployment_finishes_through_a_daemon_kill_with_every_row_once(tmp_path, options):
    r = rehearsed(tmp_path, *options)
    assert r.t_result is not None, r.gave_up
    # the daemon was killed while jobs were still to be created, and a new one carried the pipeline on
    assert len(r.processes["daemon"]) == 2 and r.t_kill is not None and r.t_restart is not None
    assert r.jobs_at_kill < r.shards and r.t_kill < r.t_result
    # runs in their own processes, some at the same time, all green
    assert len(r.run_pids) == len(r.runs) and len(set(r.run_pids.values())) == len(r.runs)
    assert r.concurrent, [(run.stage, run.started, run.ended) for run in r.runs]
    assert all(run.status == "SUCCESS" for run in r.runs), [(run.stage, run.status) for run in r.runs]
    # one job per shard, each shard merged by one run, every row once
    assert len(r.jobs) == r.shards == 40 and len({j.name for j in r.jobs}) == r.shards
    assert {s: n for s, n in r.attempts_per_shard.items() if s != CANARY_SHARD} == {
        f"s{i:05d}": 1 for i in range(r.shards)
    }
    merged = sorted(s for run in r.runs if run.stage == "merge" for s in shards_of(run.shards))
    assert merged == [f"s{i:05d}" for i in range(r.shards)]
    assert r.merged_rows == r.merged_unique_ids == r.rows
