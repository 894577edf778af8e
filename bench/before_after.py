"""The code before a change against this checkout, in alternating pairs on one local stack and the same files.

    python -m bench.before_after --before REV --stage merge [--rows 220000] [--pairs 5] [--work-dir DIR]

A git worktree of REV (in a temporary directory, removed afterwards; it runs with this checkout's
virtualenv, so REV must need the same packages) and this checkout run ``python -m bench.stages STAGE``
in turn: the code before first in even pairs, this checkout first in odd ones. Untimed setup, by this
checkout: ``gen``, the source put into S3, one ``prep`` and (for the merge stages) ``mkout``. Each run's
``seconds`` and ``client_cpu_s`` are what the stage reports of its own work (imports and the S3 client's
creation excluded; a REV from before ``bench.stages`` made its client ahead counts the client's ~0.27 s of
CPU in ``client_cpu_s``), then the medians. The README's before/after figures of the Speed II changes were
measured with this.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.run import ROOT, Stack, load_average
from bench.stages import BUCKET, parquet_path, source_key

SIDES = ("before", "after")


@dataclass(frozen=True)
class Timing:
    side: str
    seconds: float
    cpu_s: float


def stage(stack: Stack, cwd: Path, name: str, rows: int, work: Path) -> dict:
    """One ``bench.stages`` child run from ``cwd`` (whose package it imports); its JSON line."""
    cmd = [sys.executable, "-m", "bench.stages", name, "--rows", str(rows), "--work-dir", str(work)]
    proc = subprocess.run(cmd, cwd=cwd, env=stack.env(), capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"{name} in {cwd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def set_up(stack: Stack, name: str, rows: int, work: Path) -> None:
    """Untimed, by this checkout, on a new stack: the bucket, ``gen``, the source in S3, one ``prep`` and (for
    a merge stage) ``mkout``."""
    stack.wait_healthy()
    stack.s3().create_bucket(Bucket=BUCKET)
    stage(stack, ROOT, "gen", rows, work)
    stack.put_file(parquet_path(work, rows), source_key(rows))
    for setup in ("prep", "mkout") if "merge" in name else ("prep",):
        stage(stack, ROOT, setup, rows, work)


def order(pair: int) -> tuple[str, str]:
    """The code before first in even pairs, this checkout first in odd ones."""
    return SIDES if pair % 2 == 0 else SIDES[::-1]


def alternate(stack: Stack, dirs: dict[str, Path], args: argparse.Namespace) -> list[Timing]:
    timings = []
    for pair in range(args.pairs):
        for side in order(pair):
            result = stage(stack, dirs[side], args.stage, args.rows, args.work_dir)
            timings.append(Timing(side, result["seconds"], result["client_cpu_s"]))
            print(
                f"pair {pair + 1} {side:<6} {result['seconds']:.2f} s, CPU {result['client_cpu_s']:.2f} s", flush=True
            )
    return timings


def summary(timings: list[Timing]) -> list[str]:
    lines = []
    for side in SIDES:
        mine = [t for t in timings if t.side == side]
        seconds, cpu = (statistics.median(v) for v in ([t.seconds for t in mine], [t.cpu_s for t in mine]))
        fastest = min(t.seconds for t in mine)
        lines.append(f"{side:<6} median {seconds:.2f} s (fastest {fastest:.2f} s), median CPU {cpu:.2f} s")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.before_after", description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the git revision of the code before the change")
    ap.add_argument("--stage", required=True, choices=("prep", "merge", "prep_limit", "merge_limit"))
    ap.add_argument("--rows", type=int, default=220_000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "results" / "before-after")
    args = ap.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(f"load average (1/5/15 min) at the start: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(before), args.before], cwd=ROOT, check=True)
        stack = Stack(args.work_dir / "local-stack.log")
        try:
            set_up(stack, args.stage, args.rows, args.work_dir)
            timings = alternate(stack, {"before": before, "after": ROOT}, args)
        finally:
            stack.stop()
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)
    print(
        "\n".join([f"{args.stage}, {args.rows:,} rows, {args.pairs} pairs, before = {args.before}:", *summary(timings)])
    )
    print(f"load average (1/5/15 min) at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
