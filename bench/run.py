"""``make bench``: ours against the physical limit plus the S3 floor, in one run on the same files.

    python -m bench.run [--sizes 220000,2200000] [--e2e-rows 2200000] [--skip-e2e]
                        [--poll-seconds 1] [--repeats 2] [--work-dir bench/results] [--keep-data]
                        [--aws-sample-dir DIR --aws-sample-python PY [--aws-sample-rows 220000]
                         [--aws-sample-pairs 4]]

Starts the local stack (S3 + DynamoDB + Bedrock emulator) in a process of its own, then runs every
stage in a child process of its own (``python -m bench.stages``; each peak RSS is that stage's alone).
At every size: ours, the physical limit and the S3 floor for prep and for merge (see ``bench.stages``
for exactly what each does), ratio ours ÷ (limit + floor) against its target; peak RSS of each stage
and its growth from the smallest to the largest size; then the whole text pipeline through Dagster
(``runner.run_pipelines``) with the breakdown of its wall time. With ``--aws-sample-dir``, AWS's own
sample's prep and post Lambdas beside ours in alternating pairs (``bench.aws_sample``), before the
end-to-end run. Targets (2 cores): prep ≤ 1.5× and
merge ≤ 1.3× of (limit + floor); peak RSS < 1 GB at the largest size and ≤ 1.2× the smallest; end to
end < 4 minutes; ≤ 2 Bedrock control-plane calls per job.

Generated inputs are cached under WORK_DIR/data. Results: markdown on stdout (README-ready) and
WORK_DIR/latest.json; each stage's log under WORK_DIR/logs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.report import StageRun, markdown, report_json
from bench.stages import BUCKET, outputs_dir, parquet_path, source_key

ROOT = Path(__file__).resolve().parent.parent


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- machine -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import pyarrow

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "mem_total_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "platform": platform.platform(),
    }
    try:
        import dagster

        info["dagster"] = dagster.__version__
    except ImportError:
        pass
    return info


def load_average() -> str:
    """The machine's load average: at the start, what else was running while the figures were taken."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# ---- the local stack, in its own process -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """``bedrock-assets local-stack --time-scale 0`` as a child process."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bedrock_assets.cli", "local-stack", "--port", str(self.port), "--time-scale", "0"],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self._base_env(),
        )

    @staticmethod
    def _base_env() -> dict[str, str]:
        env = dict(os.environ)
        for key in (
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_BEDROCK",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "BEDROCK_ASSETS_SPEC",
            "DAGSTER_HOME",
        ):
            env.pop(key, None)
        return env

    def env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(
            {
                "AWS_ENDPOINT_URL": self.url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"local stack exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/_emulator/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"local stack not healthy after {timeout:.0f} s; see {self.log.name}")

    def configure(self, **knobs: Any) -> None:
        req = urllib.request.Request(
            self.url + "/_emulator/config",
            data=json.dumps(knobs).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=10).read()

    def s3(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def put_file(self, path: Path, key: str) -> None:
        with open(path, "rb") as body:
            self.s3().put_object(Bucket=BUCKET, Key=key, Body=body)

    def delete_prefix(self, prefix: str) -> None:
        """Free the stack's memory/disk between stages (moto keeps every object)."""
        s3 = self.s3()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def memory_mb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
        except OSError:
            pass
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---- running stages ----------------------------------------------------------------------------


class Runner:
    """Runs stages as child processes; keeps what the measured ones report."""

    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.logs: Path = args.work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.runs: list[StageRun] = []
        self.failures: list[str] = []

    def stage(self, stage: str, rows: int, *extra: str, measured: bool = True) -> StageRun | None:
        """Run a stage (a measured one ``--repeats`` times, keeping the fastest); None if it failed."""
        tried = [self._once(stage, rows, extra) for _ in range(self.args.repeats if measured else 1)]
        runs = [r for r in tried if r is not None]
        if len(runs) < len(tried):
            return None
        best = min(runs, key=lambda r: r.seconds)
        if measured:
            self.runs.append(best)
            say(f"  {'':<12} {'':>9}      {best.seconds:.2f} s, peak RSS {best.peak_rss_mb:,.0f} MB")
        else:
            say(f"  {'':<12} {'':>9}      done in {best.wall_s:.1f} s")
        return best

    def _once(self, stage: str, rows: int, extra: tuple[str, ...]) -> StageRun | None:
        cmd = [sys.executable, "-m", "bench.stages", stage, "--rows", str(rows), "--work-dir", str(self.args.work_dir)]
        cmd += [*extra, *(["--keep-data"] if self.args.keep_data else [])]
        log_path = self.logs / f"{stage}-{rows}.log"
        say(f"  {stage:<12} {rows:>9,} rows ...")
        cpu0 = self.stack.cpu_seconds()
        t0 = time.perf_counter()
        with open(log_path, "w") as err:
            proc = subprocess.run(cmd, cwd=ROOT, env=self.stack.env(), stdout=subprocess.PIPE, stderr=err, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not proc.stdout.strip():
            tail = "\n".join(log_path.read_text().splitlines()[-15:])
            message = f"{stage} ({rows} rows) failed with exit code {proc.returncode}; log {log_path}:\n{tail}"
            say(message)
            self.failures.append(message)
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return StageRun.parse(stage, rows, result, wall, self.stack.cpu_seconds() - cpu0)


def warm_page_cache(*paths: Path) -> None:
    """Read the limit's local inputs once, so it does not pay a cold disk read that ours (from S3) does not."""
    for path in paths:
        for file in sorted(path.iterdir()) if path.is_dir() else [path]:
            with open(file, "rb") as f:
                while f.read(1 << 24):
                    pass


def run_size(runner: Runner, size: int) -> None:
    """Prep and merge at one size: ours, the limit, the floor; the stack forgets the size's objects after."""
    work = runner.args.work_dir
    say(f"\n== {size:,} rows ==")
    if runner.stage("gen", size, measured=False) is None:
        return
    runner.stack.put_file(parquet_path(work, size), source_key(size))
    try:
        if runner.stage("prep", size) is None or runner.stage("mkout", size, measured=False) is None:
            return
        warm_page_cache(parquet_path(work, size))
        runner.stage("prep_limit", size)
        runner.stage("prep_floor", size)
        runner.stage("merge", size)
        warm_page_cache(outputs_dir(work, size))
        runner.stage("merge_limit", size)
        runner.stage("merge_floor", size)
    finally:
        for prefix in (f"prep-{size}/", f"floor-{size}/", source_key(size)):
            runner.stack.delete_prefix(prefix)


def run_aws_sample(runner: Runner) -> list[str]:
    """The AWS sample's Lambdas beside ours (``bench.aws_sample``) on this stack, at each of
    ``--aws-sample-rows`` with its count of ``--aws-sample-pairs``: their report lines."""
    from bench import aws_sample  # it imports this module

    args = runner.args
    lines: list[str] = []
    for rows, pairs in zip(args.aws_sample_rows, args.aws_sample_pairs, strict=True):
        say(f"\n== AWS sample side by side: {rows:,} rows, {pairs} pairs ==")
        sample_args = aws_sample.sample_args(args.aws_sample_dir, args.aws_sample_python, rows, pairs, args.work_dir)
        try:
            done = aws_sample.side_by_side(runner.stack, sample_args)
        except RuntimeError as e:
            runner.failures.append(f"AWS sample side by side at {rows:,} rows: {e}")
            say(str(e))
            continue
        title = f"AWS sample side by side, {rows:,} rows, {len(done)} alternating pairs (sample / ours):"
        lines += ["", title, "", *aws_sample.markdown(done)]
    return lines


def row_counts(text: str) -> list[int]:
    """``"220000,2_200_000"`` as ``[220000, 2200000]``; an empty text is no count."""
    counts = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"counts must be 1 or more: {text!r}")
    return counts


def run_e2e(runner: Runner, rows: int) -> StageRun | None:
    say(f"\n== end to end through Dagster: {rows:,} rows ==")
    if runner.stage("gen", rows, measured=False) is None:
        return None
    runner.stack.put_file(parquet_path(runner.args.work_dir, rows), source_key(rows))
    runner.stack.configure(record_error_rate=0.01)
    try:
        return runner.stage("e2e", rows, "--poll-seconds", str(runner.args.poll_seconds), measured=False)
    finally:
        runner.stack.configure(record_error_rate=0.0)
        for prefix in (f"e2e-{rows}/", source_key(rows)):
            runner.stack.delete_prefix(prefix)


# ---- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes", type=row_counts, default="220000,2200000", help="comma-separated row counts (default 220000,2200000)"
    )
    ap.add_argument("--e2e-rows", type=int, default=2_200_000, help="rows for the end-to-end Dagster run")
    ap.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end Dagster run")
    ap.add_argument("--poll-seconds", type=float, default=1.0, help="e2e: seconds between completion-sensor ticks")
    ap.add_argument(
        "--repeats", type=int, default=2, help="run each measured stage this many times and keep the fastest"
    )
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=ROOT / "bench" / "results",
        help="results, logs and the data cache (default bench/results)",
    )
    ap.add_argument(
        "--keep-data",
        action="store_true",
        help="keep what the limit stages write (JSONL, Parquet) under WORK_DIR/out; "
        "generated inputs under WORK_DIR/data are always kept as a cache",
    )
    ap.add_argument(
        "--aws-sample-dir",
        type=Path,
        help="your checkout of aws-samples/amazon-bedrock-samples' poc-to-prod/bedrock-batch-orchestrator/lambda: "
        "its preprocess and postprocess Lambdas are measured beside ours (bench.aws_sample) at --aws-sample-rows",
    )
    ap.add_argument("--aws-sample-python", type=Path, help="python of a virtualenv with the sample's requirements.txt")
    ap.add_argument(
        "--aws-sample-rows",
        type=row_counts,
        default=[220_000],
        help="comma-separated row counts of the side by side, one side by side each (default 220000)",
    )
    ap.add_argument(
        "--aws-sample-pairs",
        type=row_counts,
        default=[4],
        help="alternating pairs of each side by side: one count for all, or one per --aws-sample-rows (default 4)",
    )
    args = ap.parse_args(argv)
    if (args.aws_sample_dir is None) != (args.aws_sample_python is None):
        ap.error("--aws-sample-dir and --aws-sample-python go together")
    args.sizes = sorted(set(args.sizes))
    if len(args.aws_sample_pairs) == 1:
        args.aws_sample_pairs = args.aws_sample_pairs * len(args.aws_sample_rows)
    if args.aws_sample_dir is not None and not (args.aws_sample_rows and args.aws_sample_pairs):
        ap.error("--aws-sample-rows and --aws-sample-pairs need at least one count each")
    if len(args.aws_sample_pairs) != len(args.aws_sample_rows):
        ap.error("--aws-sample-pairs takes one count, or one per --aws-sample-rows")
    args.work_dir = args.work_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join([sys.executable, "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    machine = machine_info()
    header = [
        f"command: {command}",
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['mem_total_gb']} GB RAM, "
        f"Python {machine['python']}, pyarrow {machine['pyarrow']}, dagster {machine.get('dagster', '?')}, "
        f"{machine['platform']}",
        f"load average (1/5/15 min) at the start: {load_average()}",
    ]
    print("\n".join(header), flush=True)
    started = time.perf_counter()
    stack = Stack(args.work_dir / "local-stack.log")
    runner = Runner(args, stack)
    e2e = None
    sample: list[str] = []
    try:
        stack.wait_healthy()
        stack.s3().create_bucket(Bucket=BUCKET)
        say(f"local stack on {stack.url} (pid {stack.proc.pid})")
        for size in args.sizes:
            run_size(runner, size)
        if args.aws_sample_dir is not None:
            sample = run_aws_sample(runner)
        if not args.skip_e2e:
            e2e = run_e2e(runner, args.e2e_rows)
    except KeyboardInterrupt:
        runner.failures.append("interrupted")
        say("interrupted")
    finally:
        stack_mem = stack.memory_mb()
        stack.stop()

    total = time.perf_counter() - started
    out = [
        "",
        *markdown(runner.runs, args.sizes, e2e, args.poll_seconds, args.repeats),
        *sample,
        "",
        f"The local stack's peak RSS was {stack_mem.get('VmHWM', float('nan')):,.0f} MB (its own process). "
        f"Total benchmark wall time {total:.0f} s; load average (1/5/15 min) at the end, this benchmark's own "
        f"included: {load_average()}.",
    ]
    if runner.failures:
        out += ["", f"FAILED stages: {len(runner.failures)} (logs under {runner.logs})"]
    print("\n".join(out), flush=True)
    report = {
        "command": command,
        "machine": machine,
        "sizes": args.sizes,
        **report_json(runner.runs, args.sizes, e2e),
        "stages": [asdict(r) for r in runner.runs] + ([asdict(e2e)] if e2e else []),
        "local_stack_memory_mb": stack_mem,
        "total_s": total,
        "failures": runner.failures,
        "markdown": "\n".join(out),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (args.work_dir / "latest.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"\nJSON: {args.work_dir / 'latest.json'}")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
