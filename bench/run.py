"""Benchmark of bedrock_assets' heavy paths against the bare-pyarrow minimum, in one invocation.

    python -m bench.run [--sizes 220000,2200000] [--e2e-rows 2200000] [--skip-e2e]
                        [--work-dir bench/results] [--keep-data]

Starts the local stack (S3 + DynamoDB + Bedrock emulator) as a separate process, then runs every
stage in its own child process (``python -m bench.stages ...``), so each stage's peak RSS is its own
and the stack's memory/CPU is not counted in it:

1. prep   - raw Parquet -> canonical shard parts + JSONL inputs (prepare_dataset + write_shard_input)
            vs. ParquetFile.iter_batches + json.dumps of the same request lines to a local file.
2. merge  - .jsonl.out -> merged Parquet (OutputParser.parse_chunk + merge_shard + pq.write_table,
            one shard at a time) vs. pyarrow.json.read_json + pq.write_table; for Claude text
            outputs and for Titan V2 1024-dim embeddings (fewer rows: the files are ~12 KB a line).
3. peak RSS of every stage at each size, and the large/small ratio.
4. e2e    - the whole Claude text pipeline through Dagster (runner.run_pipelines) on the local stack.

Generated inputs are cached under WORK_DIR/data (Parquet per row count; .jsonl.out files per row
count, regenerated when the shard inputs change). Results: a table on stdout and WORK_DIR/latest.json.
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
from pathlib import Path
from typing import Any

from bench.stages import merge_dir

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench"
SMALL_EMB_ROWS = 50_000  # one 50k-record shard: the same shard size as the large run, so RSS compares
LARGE_EMB_ROWS = 100_000
RSS_LIMIT_MB = 1536
RSS_GROWTH_LIMIT = 1.2
RATIO_TARGET = 2.0


class StageFailed(RuntimeError):
    pass


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
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.work: Path = args.work_dir
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.results: list[dict[str, Any]] = []
        self.failures: list[str] = []

    def stage(
        self, stage: str, rows: int, *extra: str, kind: str = "text", record: bool = True, label: str | None = None
    ) -> dict[str, Any] | None:
        name = label or stage
        cmd = [
            sys.executable,
            "-m",
            "bench.stages",
            stage,
            "--rows",
            str(rows),
            "--work-dir",
            str(self.work),
            "--kind",
            kind,
            *extra,
        ]
        if self.args.keep_data:
            cmd.append("--keep-data")
        log_path = self.logs / f"{name}-{kind}-{rows}.log"
        say(f"  {name:<14} {kind:<4} {rows:>9,} rows ...")
        cpu0 = self.stack.cpu_seconds()
        t0 = time.perf_counter()
        with open(log_path, "w") as err:
            proc = subprocess.run(cmd, cwd=ROOT, env=self.stack.env(), stdout=subprocess.PIPE, stderr=err, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not proc.stdout.strip():
            tail = "\n".join(log_path.read_text().splitlines()[-15:])
            message = f"{name} ({kind}, {rows} rows) failed with exit code {proc.returncode}; log {log_path}:\n{tail}"
            say(message)
            self.failures.append(message)
            if record:
                self.results.append({"stage": name, "kind": kind, "size": rows, "error": message})
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result.update(stage=name, kind=kind, size=rows, wall_s=wall, stack_cpu_s=self.stack.cpu_seconds() - cpu0)
        say(
            f"  {'':<14} {'':<4} {'':>9}      {result['seconds']:.2f} s, peak RSS {result['maxrss_kb'] / 1024:.0f} MB"
            + (" (cached)" if result.get("cached") else "")
        )
        if record:
            self.results.append(result)
        return result


def warm_page_cache(directory: Path) -> None:
    """Read a merge stage's input files once, so neither ours nor the baseline pays a cold disk read."""
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def emb_rows_for(size: int, sizes: list[int], override: int | None) -> int:
    if override:
        return min(size, override)
    return min(size, SMALL_EMB_ROWS if size == min(sizes) else LARGE_EMB_ROWS)


def run_size(runner: Runner, size: int, sizes: list[int]) -> None:
    args = runner.args
    say(f"\n== {size:,} rows ==")
    if runner.stage("gen", size, record=False) is None:
        return
    prep = runner.stage("prep", size)
    id_chars = str(prep.get("record_id_chars", 16)) if prep else "16"
    runner.stage("prep_base", size, "--id-chars", id_chars)
    if prep is not None and runner.stage("mkout", size, record=False) is not None:
        warm_page_cache(merge_dir(args.work_dir, "text", size))
        runner.stage("merge", size)
        runner.stage("merge_base", size)
    runner.stack.delete_prefix(f"prep-{size}/")
    if args.skip_emb:
        return
    emb = emb_rows_for(size, sizes, args.emb_rows)
    if runner.stage("gen", emb, record=False) is None:
        return
    if runner.stage("mkemb", emb, kind="emb", record=False) is not None:
        warm_page_cache(merge_dir(args.work_dir, "emb", emb))
        for stage in ("merge", "merge_base"):
            result = runner.stage(stage, emb, kind="emb")
            if result is not None:
                result["size"] = size  # reported under the size it stands for; result["rows"] is what ran
    runner.stack.delete_prefix(f"emb-{emb}/")


def run_e2e(runner: Runner, rows: int) -> dict[str, Any] | None:
    say(f"\n== end to end through Dagster: {rows:,} rows ==")
    if runner.stage("gen", rows, record=False) is None:
        return None
    runner.stack.configure(record_error_rate=0.01)
    try:
        return runner.stage("e2e", rows, "--poll-seconds", str(runner.args.poll_seconds))
    finally:
        runner.stack.configure(record_error_rate=0.0)
        runner.stack.delete_prefix(f"e2e-{rows}/")


# ---- report ------------------------------------------------------------------------------------

STAGE_LABELS = {
    ("prep", "text"): "prep (Parquet → shards + JSONL)",
    ("merge", "text"): "merge text (.out → merged Parquet)",
    ("merge", "emb"): "merge embeddings 1024-d",
}


def _find(results: list[dict], stage: str, kind: str, size: int) -> dict | None:
    for r in results:
        if r["stage"] == stage and r["kind"] == kind and r["size"] == size and "error" not in r:
            return r
    return None


def _mb(n: float) -> float:
    return n / 1e6


def _rss(r: dict | None) -> float | None:
    return r["maxrss_kb"] / 1024 if r else None


def _fmt(x: float | None, spec: str = ".2f", none: str = "—") -> str:
    return none if x is None else format(x, spec)


def throughput_table(results: list[dict], sizes: list[int]) -> tuple[list[str], list[dict]]:
    lines = [
        "| stage | size (rows) | ours s | baseline s | ratio | rows/s | MB/s | peak RSS MB (ours / baseline) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows_json = []
    for (stage, kind), label in STAGE_LABELS.items():
        for size in sizes:
            ours = _find(results, stage, kind, size)
            base = _find(results, stage + "_base", kind, size)
            if ours is None and base is None:
                failed = any(
                    r["stage"] in (stage, stage + "_base") and r["kind"] == kind and r["size"] == size for r in results
                )
                if failed:
                    lines.append(f"| {label} | {size:,} | FAILED | | | | | |")
                continue
            ratio = ours["seconds"] / base["seconds"] if ours and base else None
            ran = (ours or base)["rows"]
            size_txt = f"{size:,}" if ran == size else f"{ran:,} (of {size:,})"
            lines.append(
                f"| {label} | {size_txt} | {_fmt(ours and ours['seconds'])} | {_fmt(base and base['seconds'])} | "
                f"{_fmt(ratio, '.2f')}{'×' if ratio else ''} | {_fmt(ours and ours['rows'] / ours['seconds'], ',.0f')} | "
                f"{_fmt(ours and _mb(ours['bytes']) / ours['seconds'], ',.1f')} | "
                f"{_fmt(_rss(ours), ',.0f')} / {_fmt(_rss(base), ',.0f')} |"
            )
            rows_json.append(
                {
                    "stage": stage,
                    "kind": kind,
                    "size": size,
                    "rows": ran,
                    "ours_s": ours and ours["seconds"],
                    "baseline_s": base and base["seconds"],
                    "ratio": ratio,
                    "rows_per_s": ours and ours["rows"] / ours["seconds"],
                    "mb_per_s": ours and _mb(ours["bytes"]) / ours["seconds"],
                    "peak_rss_mb": _rss(ours),
                    "baseline_peak_rss_mb": _rss(base),
                    "meets_2x": ratio is not None and ratio <= RATIO_TARGET,
                }
            )
    return lines, rows_json


def rss_table(results: list[dict], sizes: list[int]) -> list[str]:
    small, large = sizes[0], sizes[-1]
    lines = [
        f"| stage | peak RSS MB @ {small:,} | peak RSS MB @ {large:,} | large/small | "
        f"< {RSS_LIMIT_MB / 1024:.1f} GB and ≤ {RSS_GROWTH_LIMIT}× |",
        "|---|---:|---:|---:|:---:|",
    ]
    for stage, kind in (
        ("prep", "text"),
        ("prep_base", "text"),
        ("merge", "text"),
        ("merge_base", "text"),
        ("merge", "emb"),
        ("merge_base", "emb"),
        ("e2e", "text"),
    ):
        a, b = _find(results, stage, kind, small), _find(results, stage, kind, large)
        if a is None and b is None:
            continue
        ratio = _rss(b) / _rss(a) if a and b else None
        name = f"{stage} {kind}" + (" (baseline)" if stage.endswith("_base") else "")
        if kind == "emb" and a and b:
            name += f" ({a['rows']:,} / {b['rows']:,} rows)"
        ok = ""
        if not stage.endswith("_base") and b is not None:
            ok = "✓" if _rss(b) < RSS_LIMIT_MB and (ratio is None or ratio <= RSS_GROWTH_LIMIT) else "✗"
        lines.append(
            f"| {name} | {_fmt(_rss(a), ',.0f')} | {_fmt(_rss(b), ',.0f')} | {_fmt(ratio, '.2f')}{'×' if ratio else ''} | {ok} |"
        )
    return lines


def e2e_table(r: dict) -> list[str]:
    calls = r["bedrock_calls_total"]
    per_op = ", ".join(f"{k} {v}" for k, v in sorted(r["bedrock_calls"].items()))
    return [
        "| rows | jobs (shards) | wall s | rows/s | runs launched | sensor ticks | Bedrock calls (per job) | "
        "succeeded | failed | local-stack CPU s | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['rows']:,} | {r['shards']} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | {r['runs_launched']} | "
        f"{r['sensor_ticks']} | {calls} ({r['bedrock_calls_per_job']:.2f}) | {r['succeeded']:,} | {r['failed']:,} | "
        f"{r['stack_cpu_s']:.1f} | {_rss(r):,.0f} |",
        "",
        f"Bedrock control-plane calls by operation: {per_op}. Job statuses: {r['job_statuses']}. "
        f"Errors: {r['errors']}.",
    ]


def details(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        if "error" in r:
            continue
        if r["stage"] == "prep":
            out.append(
                f"- prep {r['size']:,}: {_mb(r['input_bytes']):.1f} MB Parquet → {_mb(r['bytes']):.1f} MB JSONL "
                f"in {r['shards']} shard(s); prepare_dataset {r['prepare_dataset_s']:.2f} s + write_shard_input "
                f"{r['write_shard_inputs_s']:.2f} s; local-stack CPU during the stage {r['stack_cpu_s']:.1f} s"
            )
        elif r["stage"] == "merge":
            out.append(
                f"- merge {r['kind']} {r['rows']:,} rows ({_mb(r['bytes']):.1f} MB .out, {r['shards']} shard(s)): "
                f"read rows {r['read_rows_s']:.2f} s, parse {r['parse_s']:.2f} s, merge_shard {r['merge_s']:.2f} s, "
                f"write {r['write_s']:.2f} s"
            )
        elif r["stage"] == "merge_base":
            out.append(
                f"- merge baseline {r['kind']} {r['rows']:,} rows: read_json {r['read_json_s']:.2f} s, "
                f"write {r['write_s']:.2f} s"
            )
    return out


# ---- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="220000,2200000", help="comma-separated row counts (default 220000,2200000)")
    ap.add_argument("--e2e-rows", type=int, default=2_200_000, help="rows for the end-to-end Dagster run")
    ap.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end Dagster run")
    ap.add_argument("--skip-emb", action="store_true", help="skip the embedding merge")
    ap.add_argument(
        "--emb-rows",
        type=int,
        default=None,
        help=f"rows for the embedding merge (default {SMALL_EMB_ROWS:,} at the smallest size, "
        f"{LARGE_EMB_ROWS:,} at the others, capped at the size)",
    )
    ap.add_argument("--poll-seconds", type=float, default=1.0, help="e2e: seconds between completion-sensor ticks")
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=ROOT / "bench" / "results",
        help="results, logs and the data cache (default bench/results)",
    )
    ap.add_argument(
        "--keep-data",
        action="store_true",
        help="also keep what the stages write (baseline JSONL, merged Parquet) under WORK_DIR/out; "
        "generated inputs under WORK_DIR/data are always kept as a cache",
    )
    args = ap.parse_args(argv)
    args.sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
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
        f"sizes: {', '.join(f'{s:,}' for s in args.sizes)}; e2e: "
        + ("skipped" if args.skip_e2e else f"{args.e2e_rows:,} rows"),
    ]
    print("\n".join(header), flush=True)
    started = time.perf_counter()
    stack = Stack(args.work_dir / "local-stack.log")
    runner = Runner(args, stack)
    e2e = None
    try:
        stack.wait_healthy()
        stack.s3().create_bucket(Bucket=BUCKET)
        say(f"local stack on {stack.url} (pid {stack.proc.pid})")
        for size in args.sizes:
            run_size(runner, size, args.sizes)
        if not args.skip_e2e:
            e2e = run_e2e(runner, args.e2e_rows)
    except KeyboardInterrupt:
        runner.failures.append("interrupted")
        say("interrupted")
    finally:
        stack_mem = stack.memory_mb()
        stack.stop()

    table, rows_json = throughput_table(runner.results, args.sizes)
    out = ["", "### Throughput (ours = bedrock_assets code path; baseline = bare pyarrow/json)", "", *table]
    if len(args.sizes) > 1:
        out += [
            "",
            "### Peak RSS per stage (each stage in its own process)",
            "",
            *rss_table(runner.results, args.sizes),
        ]
    if e2e is not None:
        out += [
            "",
            "### End to end through Dagster on the local stack (time-scale 0, 1% emulated record errors)",
            "",
            *e2e_table(e2e),
        ]
    notes = details(runner.results)
    if notes:
        out += ["", "Details:", *notes]
    out += [
        "",
        f"Notes: MB/s is MB of JSONL written (prep) or of .jsonl.out read (merge); ratio = ours / baseline "
        f"(target ≤ {RATIO_TARGET:.0f}×). Embedding merges run on fewer rows (the row count is shown). "
        "The local stack runs in its own process; its peak RSS was "
        f"{stack_mem.get('VmHWM', float('nan')):,.0f} MB. Total benchmark wall time "
        f"{time.perf_counter() - started:.0f} s.",
    ]
    if runner.failures:
        out += ["", f"FAILED stages: {len(runner.failures)} (see logs under {runner.logs})"]
    print("\n".join(out), flush=True)

    report = {
        "command": command,
        "machine": machine,
        "sizes": args.sizes,
        "e2e_rows": None if args.skip_e2e else args.e2e_rows,
        "table": rows_json,
        "stages": runner.results,
        "e2e": e2e,
        "local_stack_memory_mb": stack_mem,
        "failures": runner.failures,
        "markdown": "\n".join(out),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (args.work_dir / "latest.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"\nJSON: {args.work_dir / 'latest.json'}")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
