"""Where a bench stage's CPU goes: ``python -m bench.parts prep|merge [--rows 220000] [--runs 2] [--work-dir DIR]``.

Starts the local stack, does the bench's untimed setup (``gen``, the source in S3, one ``prep``, and ``mkout``
for merge), then runs ``bench.stages STAGE`` in a child with the pipeline's main functions wrapped (``instrument``):
each wrapped call's CPU on its own thread (``time.thread_time``), less that of the wrapped calls inside it,
summed per part; **rest** is the stage's client CPU (``client_cpu_s``, every thread) outside them — Arrow's own
thread pools (``read_json``, Parquet encoding and reading, the source's batches) and code not wrapped. The run
with the least client CPU of ``--runs`` is printed.

Unlike cProfile, which sees only the main thread and puts a hook on every call (so a per-line Python loop
looks two to three times its cost beside a few calls into Arrow), this wraps a few dozen calls per shard and
counts every thread.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import io
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.before_after import set_up
from bench.run import ROOT, Stack, load_average

Label = str | Callable[[tuple[Any, ...]], str]


class PartClock:
    """Per part: CPU of the calls wrapped under it on their own threads, exclusive of wrapped calls inside."""

    def __init__(self, clock: Callable[[], float] = time.thread_time) -> None:
        self.clock = clock
        self.spent: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self._local = threading.local()
        self._lock = threading.Lock()  # the totals are added to from every thread

    def _enter(self) -> tuple[list[float], float]:
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(0.0)  # the CPU of wrapped calls inside this one
        return stack, self.clock()

    def _leave(self, stack: list[float], started: float, part: str) -> None:
        total = self.clock() - started
        inner = stack.pop()
        with self._lock:
            self.spent[part] = self.spent.get(part, 0.0) + total - inner
            self.calls[part] += 1
        if stack:
            stack[-1] += total

    def wrap(self, fn: Callable[..., Any], label: Label) -> Callable[..., Any]:
        """``fn`` counted under ``label`` (or ``label(args)``); a generator function per item it yields (iterated
        only: ``send`` and ``throw`` are not passed on)."""
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def items(*args: Any, **kwargs: Any) -> Any:
                part = label(args) if callable(label) else label
                it = fn(*args, **kwargs)
                while True:
                    stack, started = self._enter()
                    try:
                        item = next(it)
                    except StopIteration as end:
                        return end.value
                    finally:
                        self._leave(stack, started, part)
                    yield item

            return items

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            part = label(args) if callable(label) else label
            stack, started = self._enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._leave(stack, started, part)

        return call

    def patch(self, owner: Any, name: str, label: Label) -> None:
        setattr(owner, name, self.wrap(getattr(owner, name), label))


def _called_from(what: str) -> Callable[[tuple[Any, ...]], str]:
    """A label naming the function that made the call (two frames up: the wrapper, then the caller)."""
    return lambda _: f"{what} ({sys._getframe(2).f_code.co_name})"


def instrument(clock: PartClock) -> None:
    """Wrap what a prep or merge stage spends its CPU on."""
    import botocore.client
    import botocore.response
    import pyarrow.parquet as pq

    from bedrock_assets import output_lines, records, shards
    from bedrock_assets.graph import merged_results
    from bedrock_assets.record_cache import Segment

    parts: list[tuple[Any, str, Label]] = [
        (botocore.client.BaseClient, "_make_api_call", lambda args: f"S3 call {args[1]} (botocore: sign, send)"),
        (botocore.response.StreamingBody, "read", "S3 response bodies read"),
        (pq, "write_table", _called_from("Parquet write")),
        (pq, "read_table", _called_from("Parquet read")),
        (records, "request_lines", "request lines rendered (escape, template)"),
        (shards, "cache_keys", "record-cache keys (BLAKE2b a line)"),
        (shards, "write_lines", "staged lines written (and hashed when not known)"),
        (shards, "shard_digest", "shard digest (sha256 of the lines)"),
        (shards, "request_chars", "request characters counted"),
        (output_lines.OutputParser, "parse_chunk", "job output parsed (read_json's calling thread, normalize)"),
        (output_lines.OutputParser, "_keep", "job output: first line per record id"),
        (output_lines, "_segments", "job output: lines counted"),
        (Segment, "table", "cache segment: filtered and keyed"),
        (merged_results, "merge_shard", "merge: the join"),
        (merged_results, "outcome_counts", "merge: counts"),
        (merged_results, "resend_count", "merge: counts"),
    ]
    for owner, name, label in parts:
        clock.patch(owner, name, label)


def child(argv: list[str]) -> int:
    """``bench.stages`` with the parts wrapped; prints its result with ``parts`` and ``calls`` as one JSON line."""
    from bench import stages

    clock = PartClock()
    instrument(clock)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        stages.main(argv)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    result.update(parts=dict(clock.spent), calls=dict(clock.calls))
    print(json.dumps(result))
    return 0


def table(result: dict[str, Any]) -> list[str]:
    total = result["client_cpu_s"]
    parts = sorted(result["parts"].items(), key=lambda kv: -kv[1])
    rows = [f"| {name} | {result['calls'][name]} | {s:.3f} | {s / total:.0%} |" for name, s in parts if s >= 0.0005]
    rest = total - sum(result["parts"].values())
    return [
        "| part | calls | CPU s | share |",
        "|---|---:|---:|---:|",
        *rows,
        f"| rest (Arrow's thread pools, code not wrapped) | | {rest:.3f} | {rest / total:.0%} |",
        f"| **client CPU** (wall {result['seconds']:.2f} s) | | **{total:.3f}** | |",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.parts", description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("prep", "merge"), help="the bench stage whose CPU is split")
    ap.add_argument("--rows", type=int, default=220_000, help="rows of the source (default 220000)")
    ap.add_argument("--runs", type=int, default=2, help="runs of the stage; the one with the least CPU is shown")
    ap.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "results" / "parts", help="data and logs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(f"load average (1/5/15 min) at the start: {load_average()}", flush=True)
    stack = Stack(args.work_dir / "local-stack.log")
    try:
        set_up(stack, args.stage, args.rows, args.work_dir)
        cmd = [sys.executable, "-m", "bench.parts", "--child", args.stage, "--rows", str(args.rows)]
        cmd += ["--work-dir", str(args.work_dir)]
        runs = []
        for _ in range(args.runs):
            proc = subprocess.run(cmd, cwd=ROOT, env=stack.env(), capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"bench.parts child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        stack.stop()
    best = min(runs, key=lambda r: r["client_cpu_s"])
    print(f"\n{args.stage}, {args.rows:,} rows, the run with the least client CPU of {len(runs)}:\n")
    print("\n".join(table(best)))
    print(f"\nload average (1/5/15 min) at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        raise SystemExit(child(sys.argv[2:]))
    raise SystemExit(main())
