"""A deadline kept with stuck jobs, on the local stack: the timeline of one `bedrock-assets run`.

    python -m bench.deadline [--rows 1200] [--within 40] [--margin 5] [--time-scale 1.0] [--slow-factor 40]

Six shards of 200 rows (claude-3-5-haiku, 1% record errors off): s00001's job never leaves Scheduled
(``hold_jobs_matching``), s00003's stalls InProgress (``stall_jobs_matching``) and s00004's runs
``--slow-factor`` times slower than the rest (``slow_jobs_matching``). The pipeline has
``deadline: {within: <within>s, margin: <margin>s, on_demand_records_per_minute: 6000}``. It runs the real
command (`bedrock-assets run`), then prints, from the ledger and the cutoff record: when each job was
created, started and ended relative to the first job, the cutoff and what it stopped and why, the records
answered on demand and the finish against the deadline; the run's own summary (above it) has the bill by
lane, and the exit code ends it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rel(iso: str | None, t0: datetime) -> str:
    return f"{(datetime.fromisoformat(iso) - t0).total_seconds():6.1f}s" if iso else "     - "


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--within", type=int, default=40, help="deadline: seconds after the first job")
    parser.add_argument("--margin", type=int, default=5, help="seconds kept free before the deadline")
    parser.add_argument("--time-scale", type=float, default=1.0, help="seconds per emulated job status step")
    parser.add_argument("--slow-factor", type=float, default=40.0, help="how much slower s00004's job runs")
    return parser.parse_args(argv)


def attributes_of(args: argparse.Namespace) -> dict[str, Any]:
    """The scenario's pipeline: six 200-record shards of the sample, with the deadline under test."""
    return {
        "name": "due",
        "source": {"uri": "s3://deadline-bench/raw/sample.parquet"},
        "model": {"id": "anthropic.claude-3-5-haiku-20241022-v1:0"},
        "prompt": {"template": "Task: {task}\n\n{source}"},
        "output_uri": "s3://deadline-bench/out/due",
        "role_arn": "arn:aws:iam::123456789012:role/BedrockBatchInference",
        "shards": {"max_records": 200},
        "deadline": {"within": f"{args.within}s", "margin": f"{args.margin}s", "on_demand_records_per_minute": 6000},
    }


def write_defs(attributes: dict[str, Any]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="deadline-bench-")) / "due"
    folder.mkdir()
    (folder / "defs.yaml").write_text(
        yaml.safe_dump({"type": "bedrock_assets.components.BedrockBatchPipeline", "attributes": attributes})
    )
    return folder


def print_timeline(attempts: list[Any], cutoff: Any, args: argparse.Namespace) -> None:
    """Each attempt's times relative to the first job, the cutoff, what it stopped and sent on demand."""
    t0 = min(datetime.fromisoformat(a.created_at or "") for a in attempts)
    print(f"\ntimeline (seconds after the first job; deadline at {args.within}.0s, margin {args.margin}s)")
    print(f"  {'shard':<10} {'status':<18} {'created':>8} {'started':>8} {'ended':>8} {'processed':>9}  why")
    for a in attempts:
        on_demand = (a.job_arn or "").startswith("on-demand/")
        why = (a.message or "") if a.stopped_by or a.job_arn is None or on_demand else ""
        status = f"{a.status.value} ({'on demand' if on_demand else 'batch'})"
        print(
            f"  {a.shard:<10} {status:<18} {rel(a.created_at, t0)} "
            f"{rel(a.started_at or a.submitted_at, t0)} {rel(a.end_time, t0)} {a.counts.processed:>9}  {why}"
        )
    if cutoff is not None:
        print(
            f"cutoff reached at {rel(cutoff.reached_at, t0).strip()} ({cutoff.remaining} records unanswered, "
            f"{cutoff.throughput})"
        )
    answered = [a for a in attempts if (a.job_arn or "").startswith("on-demand/") and a.shard != "canary"]
    finished = max(datetime.fromisoformat(a.end_time or "") for a in attempts)
    print(f"stopped at the cutoff: {', '.join(a.shard for a in attempts if a.stopped_by) or 'none'}")
    print(
        f"answered on demand: {sum(a.counts.succeeded for a in answered)} records in {len(answered)} on-demand shard(s)"
    )
    print(f"last answer at {(finished - t0).total_seconds():.1f}s, deadline at {args.within}.0s")


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)

    import boto3

    from bedrock_assets.cli import main as cli
    from bedrock_assets.deadline import load_cutoff
    from bedrock_assets.ledger import JobLedgerResource
    from bedrock_assets.local_stack import FaultConfig, LocalStack
    from bedrock_assets.pipeline import Step
    from bedrock_assets.sample.seed import ensure_bucket, seed_sample
    from bedrock_assets.spec import parse_pipeline
    from bedrock_assets.storage import S3Access

    faults = FaultConfig(
        hold_jobs_matching="-s00001-",
        stall_jobs_matching="-s00003-",
        slow_jobs_matching="-s00004-",
        slow_factor=args.slow_factor,
    )
    with LocalStack(port=free_port(), time_scale=args.time_scale, faults=faults) as stack:
        os.environ.update(stack.env())
        os.environ["BEDROCK_ASSETS_LEDGER_TABLE"] = table = f"deadline-{uuid.uuid4().hex[:8]}"
        os.environ.pop("DAGSTER_HOME", None)
        s3 = boto3.client("s3")
        ensure_bucket(s3, "deadline-bench")
        seed_sample(s3, "s3://deadline-bench/raw/sample.parquet", rows=args.rows)
        attributes = attributes_of(args)
        code = cli(["run", str(write_defs(attributes)), "--poll-seconds", "0.5", "--timeout", "600"])
        attempts = JobLedgerResource(table_name=table).get_ledger().attempts_of("due")
        print_timeline(attempts, load_cutoff(Step.of(parse_pipeline(attributes), S3Access(s3))), args)
        print(f"exit code {code}")
        return code


if __name__ == "__main__":
    sys.exit(main())
