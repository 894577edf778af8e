"""Orchestration as shards grow: the same pipeline headless at 100, 1,000 and 2,000 tiny shards.

    python -m bench.orchestration [--shards 100,1000,2000] [--records 100] [--work-dir bench/results/orchestration]

For each N, a child process of its own (its peak RSS is that N's alone) runs one pipeline of N × records
rows in shards of ``records`` through Dagster headless (``runner.run_pipelines``: the daemon's sensor and
automation evaluations, each stage a run) against the local stack (a process of its own, jobs instant,
the model's concurrency quota raised to N so slots never limit), on a SQLite instance in a fresh
DAGSTER_HOME. It reports: the wall time and its share per shard; the completion sensor's tick (median and
the slowest while the pipeline ran; and the steady state, polling and between polls, once everything is
merged and a tick has read the run's last writes) and the automation evaluation; the definitions' load
time in a new process with N partitions registered (import, build, and the first automation evaluation
the daemon makes); Dagster runs launched; Bedrock control-plane calls per job; S3 and DynamoDB calls per
shard (every call the process makes while the pipeline runs, seeding its source excluded, by operation in
the JSON); the instance's database size; peak RSS. Markdown on stdout, JSON in WORK_DIR/latest.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bedrock_assets.ledger import OVERLAP
from bench.report import peak_rss_kb
from bench.run import Stack, machine_info

ROOT = Path(__file__).resolve().parent.parent
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
BUCKET = "bench-orchestration"
RUNTIME_OPS = {"InvokeModel", "Converse"}


def spec_attributes(shards: int, records: int) -> dict[str, Any]:
    return {
        "name": "orchestration",
        "source": {"uri": f"s3://{BUCKET}/raw/{shards}.parquet"},
        "model": {"id": CLAUDE},
        "prompt": {"template": "Task: {task}\n\n{source}"},
        "output_uri": f"s3://{BUCKET}/out-{shards}",
        "shards": {"max_records": records},
        "role_arn": "arn:aws:iam::123456789012:role/BedrockBatchInference",
        "canary": {"records": 0},
    }


def build_defs(shards: int, records: int) -> tuple[Any, Any]:
    import dagster as dg

    from bedrock_assets.bedrock.resource import BedrockBatchResource
    from bedrock_assets.components.bedrock_batch_pipeline import build_pipeline_defs
    from bedrock_assets.ledger import JobLedgerResource
    from bedrock_assets.resources import bedrock_resources
    from bedrock_assets.spec import PipelineSpec, parse_pipeline

    spec: PipelineSpec = parse_pipeline(spec_attributes(shards, records))
    bedrock = BedrockBatchResource(quota_overrides={CLAUDE: {"max_concurrent_jobs": shards}})
    ledger = JobLedgerResource(table_name=f"orchestration-{shards}")
    resources = bedrock_resources(bedrock=bedrock, bedrock_ledger=ledger)
    return dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=resources)), spec


class Timings:
    """Durations of the completion ticks and automation evaluations the runner makes (not the runs they request)."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.automation: list[float] = []

    def install(self) -> None:
        import dagster

        from bedrock_assets.graph import job_completion

        slowest = f"{os.environ['BENCH_PROFILE']}.slowest-tick" if os.environ.get("BENCH_PROFILE") else None
        job_completion.completion_tick = _timed(job_completion.completion_tick, self.ticks, slowest)
        # the runner calls it as dg.evaluate_automation_conditions, as the daemon would
        dagster.evaluate_automation_conditions = _timed(dagster.evaluate_automation_conditions, self.automation)


class AwsCalls:
    """Every AWS call this process makes (the pipeline's own: the local stack runs in a process of its own), by
    service and operation."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, int]] = {}

    def install(self) -> None:
        import botocore.client

        call = botocore.client.BaseClient._make_api_call
        calls, lock = self.calls, threading.Lock()  # the pipeline's writer and copy threads call too

        def counted(client: Any, operation: str, params: Any) -> Any:
            with lock:
                service = calls.setdefault(client.meta.service_model.service_name, {})
                service[operation] = service.get(operation, 0) + 1
            return call(client, operation, params)

        botocore.client.BaseClient._make_api_call = counted


def _timed(call: Any, durations: list[float], profile_to: str | None = None) -> Any:
    """``call``, appending the seconds of each call to ``durations``; with ``profile_to``, the profile of the
    slowest call so far is written there."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        profiler = cProfile.Profile() if profile_to else None
        t0 = time.perf_counter()
        try:
            return profiler.runcall(call, *args, **kwargs) if profiler else call(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - t0)
            if profiler and profile_to and durations[-1] >= max(durations):
                profiler.dump_stats(profile_to)

    return timed


def steady_tick(defs: Any, spec: Any, instance: Any, cursor: str | None = None) -> tuple[float, str | None]:
    """One more completion tick once everything is merged (what every later tick costs), and its cursor."""
    import dagster as dg
    from dagster._core.definitions.partitions.context import partition_loading_context

    sensor = defs.resolve_sensor_def(f"{spec.name}__job_completion")
    context = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs, cursor=cursor)
    t0 = time.perf_counter()
    with partition_loading_context(dynamic_partitions_store=instance):
        result = sensor.evaluate_tick(context)
    return time.perf_counter() - t0, result.cursor


LOAD_SNIPPET = """
import sys, time
t0 = time.perf_counter()
import dagster as dg
from bench.orchestration import build_defs
defs, spec = build_defs(int(sys.argv[1]), int(sys.argv[2]))
defs.get_repository_def().get_all_jobs()
t1 = time.perf_counter()
instance = dg.DagsterInstance.get()
n = len(instance.get_dynamic_partitions(spec.name + "__shards"))
result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {n}")
"""


def load_in_new_process(shards: int, records: int) -> tuple[float, float, int]:
    """Import and build the definitions, then the first automation evaluation, in a new process."""
    out = subprocess.run(
        [sys.executable, "-c", LOAD_SNIPPET, str(shards), str(records)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def database_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file() and ".db" in p.name)


def one(shards: int, records: int, home: Path) -> dict[str, Any]:
    """The pipeline at ``shards`` shards, in this process (the stack's endpoint in the environment)."""
    import boto3
    import dagster as dg

    from bedrock_assets.runner import run_pipelines
    from bedrock_assets.sample.seed import seed_sample

    seed_sample(boto3.client("s3"), f"s3://{BUCKET}/raw/{shards}.parquet", rows=shards * records)
    os.environ["DAGSTER_HOME"] = str(home)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    timings, aws = Timings(), AwsCalls()
    timings.install()
    aws.install()
    defs, spec = build_defs(shards, records)
    instance = dg.DagsterInstance.get()
    t0 = time.perf_counter()
    (summary,) = run_pipelines(
        defs, [spec], instance, poll_seconds=0.5, timeout_seconds=7200, log=lambda m: print(m, file=sys.stderr)
    )
    wall = time.perf_counter() - t0
    aws_calls = {service: dict(ops) for service, ops in aws.calls.items()}  # the run's, before the steady ticks
    # the first tick after the run reads again the ledger items written in the run's last minute (the index's
    # overlap); from the next on, what a tick costs while nothing changes: steady
    time.sleep(OVERLAP.total_seconds() + 1)
    first_after, _ = steady_tick(defs, spec, instance)
    polled, cursor = steady_tick(defs, spec, instance)  # a tick that polls Bedrock (once per poll_seconds)
    between, _ = steady_tick(defs, spec, instance, cursor)  # a tick between polls (every 10 s)
    if os.environ.get("BENCH_PROFILE"):  # where a steady tick's time goes (and the slowest's: Timings)
        cProfile.runctx("steady_tick(defs, spec, instance)", globals(), locals(), os.environ["BENCH_PROFILE"])
    calls = {op: n for op, n in summary.bedrock_calls.calls.items() if op not in RUNTIME_OPS}
    jobs = calls.get("CreateModelInvocationJob", 0)
    load_s, first_automation_s, registered = load_in_new_process(shards, records)
    return {
        "shards": shards,
        "rows": summary.rows,
        "succeeded": summary.succeeded,
        "wall_s": wall,
        "wall_per_shard_s": wall / shards,
        "tick_median_s": statistics.median(timings.ticks),
        "tick_max_s": max(timings.ticks),
        "ticks": len(timings.ticks),
        "tick_first_after_run_s": first_after,
        "tick_steady_poll_s": polled,
        "tick_steady_s": between,
        "automation_median_s": statistics.median(timings.automation),
        "automation_max_s": max(timings.automation),
        "defs_load_s": load_s,
        "first_automation_s": first_automation_s,
        "partitions_registered": registered,
        "runs": summary.runs_launched,
        "jobs": jobs,
        "control_calls": calls,
        "control_calls_per_job": sum(calls.values()) / jobs if jobs else None,
        "aws_calls": aws_calls,  # every call while the pipeline ran, by service and operation
        "s3_calls_per_shard": sum(aws_calls.get("s3", {}).values()) / shards,
        "dynamodb_calls_per_shard": sum(aws_calls.get("dynamodb", {}).values()) / shards,
        "db_bytes": database_bytes(home),
        "peak_rss_mb": peak_rss_kb() / 1024,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    head = (
        "| shards | rows | wall | per shard | tick median / max while running | steady tick: poll / between polls | "
        "automation median / max | "
        "defs load + first automation | runs | control calls / job | S3 / DynamoDB calls per shard | instance DB | "
        "peak RSS |\n"
        "|---:|---:|---:|---:|---|---|---|---|---:|---:|---|---:|---:|"
    )
    lines = [head]
    for r in results:
        lines.append(
            f"| {r['shards']:,} | {r['rows']:,} | {r['wall_s']:.0f} s | {r['wall_per_shard_s']:.2f} s | "
            f"{r['tick_median_s']:.2f} / {r['tick_max_s']:.2f} s | "
            f"{r['tick_steady_poll_s']:.2f} / {r['tick_steady_s']:.2f} s | "
            f"{r['automation_median_s']:.2f} / {r['automation_max_s']:.2f} s | "
            f"{r['defs_load_s']:.1f} + {r['first_automation_s']:.1f} s | {r['runs']} | "
            f"{r['control_calls_per_job']:.2f} | {r['s3_calls_per_shard']:.1f} / {r['dynamodb_calls_per_shard']:.1f} | "
            f"{r['db_bytes'] / 2**20:.0f} MiB | {r['peak_rss_mb']:.0f} MiB |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.orchestration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="100,1000,2000", help="comma-separated shard counts")
    parser.add_argument("--records", type=int, default=100, help="records per shard (a job's minimum: 100)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "results" / "orchestration")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child: one shard count
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.records, args.home)))
        return 0
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in [int(s) for s in args.shards.split(",")]:
        stack = Stack(args.work_dir / f"stack-{n}.log")
        try:
            stack.wait_healthy()
            stack.configure(concurrency_limits={CLAUDE: n})
            home = Path(tempfile.mkdtemp(prefix=f"orchestration-{n}-"))
            child = [sys.executable, "-m", "bench.orchestration", "--one", str(n), "--records", str(args.records)]
            print(f"[{time.strftime('%H:%M:%S')}] {n} shards ...", file=sys.stderr, flush=True)
            with open(args.work_dir / f"run-{n}.log", "w") as log:
                out = subprocess.run(
                    [*child, "--home", str(home)], env=stack.env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=log
                )
            if out.returncode:
                raise SystemExit(f"{n} shards failed (exit {out.returncode}); see {log.name}")
            results.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
            print(markdown(results[-1:]), file=sys.stderr, flush=True)
        finally:
            stack.proc.terminate()
            stack.proc.wait(30)
    (args.work_dir / "latest.json").write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
