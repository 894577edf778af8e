"""The benchmark's results as typed rows, and their markdown (stdout, README) and JSON (latest.json)."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def peak_rss_kb() -> int:
    """This process's own peak resident size since it started, in kB: Linux's ``VmHWM``. Not ``ru_maxrss``, which
    keeps across fork and exec the resident size the parent had at the fork: children of a bench parent that
    held 5 GB (the 2.2M-row side by side splices outputs in the parent) reported at least that much.
    ``ru_maxrss`` only where there is no ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


PREP_TARGET = 1.5
MERGE_TARGET = 1.3
RSS_LIMIT_MB = 1024
RSS_GROWTH_LIMIT = 1.2
E2E_LIMIT_S = 240.0
CALLS_PER_JOB_LIMIT = 2.0

DEFINITIONS = [
    "**ours, prep**: `prepare_dataset(step)` then `write_shard_inputs(step, shards)` over every shard of "
    "the plan, in one process (one Dagster run, in-process executor); the source Parquet is read from S3.",
    "**ours, merge**: `collect_each(step, attempts)` over every shard then `merge_each(step, attempts)`, as the "
    "merge stage's run does (each shard's file uploads while the next is worked on), in one process; the "
    "`.jsonl.out` files are in S3 where a finished job puts them.",
    "**limit, prep** (physical limit): `ParquetFile.iter_batches` of the local copy of the source, the same "
    "request lines with Arrow compute only (`json_escape` of the column values + `binary_join_element_wise` "
    "with the fixed frame) and the canonical Parquet parts, written to local disk; every JSONL file is checked "
    "equal to ours (sha256).",
    "**limit, merge**: `pyarrow.json.read_json` of the same `.jsonl.out` files (local), a join onto the "
    "shard's input rows (local canonical Parquet; `index_in` + `take`) and `pq.write_table` to local disk.",
    "**S3 floor**: plain boto3 against the same local S3, no processing, the fastest of `get_object` / "
    "`download_file` and `put_object` / `upload_file`: prep = GET the source + PUT ours' canonical parts + "
    "PUT ours' JSONL inputs; merge = GET the `.jsonl.out` files + GET the canonical parts + PUT ours' outputs "
    "Parquet + PUT ours' merged Parquet.",
    "**ratio** = ours ÷ (limit + S3 floor); *allowed* = target × (limit + floor).",
]


@dataclass(frozen=True)
class StageRun:
    """One stage's process: its measured seconds, peak RSS and details (the stage's JSON line)."""

    stage: str
    size: int
    seconds: float
    rows: int
    bytes: int
    peak_rss_mb: float
    wall_s: float
    stack_cpu_s: float
    details: dict[str, Any]

    @classmethod
    def parse(cls, stage: str, size: int, result: dict[str, Any], wall_s: float, stack_cpu_s: float) -> StageRun:
        core = {k: result.pop(k) for k in ("seconds", "rows", "bytes", "maxrss_kb")}
        return cls(
            stage,
            size,
            core["seconds"],
            core["rows"],
            core["bytes"],
            core["maxrss_kb"] / 1024,
            wall_s,
            stack_cpu_s,
            result,
        )


@dataclass(frozen=True)
class Comparison:
    """Ours against the physical limit plus the S3 floor, for one stage at one size."""

    stage: str
    size: int
    target: float
    ours: StageRun | None
    limit: StageRun | None
    floor: StageRun | None

    @property
    def complete(self) -> bool:
        return None not in (self.ours, self.limit, self.floor)

    @property
    def runs(self) -> tuple[StageRun, StageRun, StageRun]:
        """Ours, the limit and the floor: only of a complete comparison."""
        if self.ours is None or self.limit is None or self.floor is None:
            raise ValueError(f"{self.stage} at {self.size:,} rows: a stage failed, nothing to compare")
        return self.ours, self.limit, self.floor

    @property
    def bound_s(self) -> float:
        _, limit, floor = self.runs
        return limit.seconds + floor.seconds

    @property
    def ratio(self) -> float:
        return self.runs[0].seconds / self.bound_s

    @property
    def allowed_s(self) -> float:
        return self.target * self.bound_s

    @property
    def met(self) -> bool:
        return self.ratio <= self.target

    def verdict(self) -> str:
        ours = self.runs[0].seconds
        if self.met:
            return f"met ({self.allowed_s - ours:.2f} s to spare)"
        return f"missed by {ours - self.allowed_s:.2f} s ({self.ratio / self.target - 1:.0%} over)"

    def line(self) -> str:
        if not self.complete:
            return f"| {self.stage} | {self.size:,} | FAILED | | | | ≤ {self.target}× | |"
        ours, limit, floor = self.runs
        return (
            f"| {self.stage} | {self.size:,} | {ours.seconds:.2f} | {limit.seconds:.2f} | "
            f"{floor.seconds:.2f} | {self.ratio:.2f}× | ≤ {self.target}× ({self.allowed_s:.2f} s) | "
            f"{self.verdict()} |"
        )

    def json(self) -> dict[str, Any]:
        base = {"stage": self.stage, "size": self.size, "target": self.target}
        if not self.complete:
            return base | {"failed": True}
        ours, limit, floor = self.runs
        return base | {
            "ours_s": ours.seconds,
            "limit_s": limit.seconds,
            "floor_s": floor.seconds,
            "ratio": self.ratio,
            "allowed_s": self.allowed_s,
            "met": self.met,
        }


@dataclass(frozen=True)
class RssGrowth:
    """A stage's peak RSS at the smallest and the largest size."""

    stage: str
    small: StageRun | None
    large: StageRun | None

    @property
    def ratio(self) -> float | None:
        return self.large.peak_rss_mb / self.small.peak_rss_mb if self.small and self.large else None

    @property
    def met(self) -> bool | None:
        if self.large is None or self.ratio is None:
            return None
        return self.large.peak_rss_mb < RSS_LIMIT_MB and self.ratio <= RSS_GROWTH_LIMIT

    def line(self) -> str:
        def mb(run: StageRun | None) -> str:
            return f"{run.peak_rss_mb:,.0f}" if run else "—"

        ratio = f"{self.ratio:.2f}×" if self.ratio else "—"
        verdict = {None: "", True: "met", False: "missed"}[self.met] if not self.stage.endswith("limit") else ""
        return f"| {self.stage} | {mb(self.small)} | {mb(self.large)} | {ratio} | {verdict} |"

    def json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "small_mb": self.small and self.small.peak_rss_mb,
            "large_mb": self.large and self.large.peak_rss_mb,
            "ratio": self.ratio,
            "met": None if self.stage.endswith("limit") else self.met,
        }


def comparisons(runs: list[StageRun], sizes: list[int]) -> list[Comparison]:
    def find(stage: str, size: int) -> StageRun | None:
        return next((r for r in runs if r.stage == stage and r.size == size), None)

    return [
        Comparison(stage, size, target, find(stage, size), find(f"{stage}_limit", size), find(f"{stage}_floor", size))
        for stage, target in (("prep", PREP_TARGET), ("merge", MERGE_TARGET))
        for size in sizes
    ]


def rss_growth(runs: list[StageRun], small: int, large: int) -> list[RssGrowth]:
    def find(stage: str, size: int) -> StageRun | None:
        return next((r for r in runs if r.stage == stage and r.size == size), None)

    return [RssGrowth(s, find(s, small), find(s, large)) for s in ("prep", "prep_limit", "merge", "merge_limit")]


def transfer_notes(runs: list[StageRun]) -> list[str]:
    """What each floor and stage counted, and where ours' time went."""
    notes = []
    for r in runs:
        if r.stage.endswith("_floor"):
            parts = "; ".join(
                f"{t['what']} {t['bytes'] / 1e6:,.1f} MB ({t['objects']} object(s), {t['method']}) {t['seconds']:.2f} s"
                for t in r.details["transfers"]
            )
            notes.append(f"- {r.stage} @ {r.size:,}: {parts}")
        elif r.stage == "prep":
            notes.append(
                f"- prep @ {r.size:,}: prepare_dataset {r.details['prepare_dataset_s']:.2f} s + write_shard_input "
                f"{r.details['write_shard_input_s']:.2f} s, {r.details['shards']} shard(s), "
                f"{r.bytes / 1e6:,.1f} MB JSONL; client CPU {r.details['client_cpu_s']:.1f} s, local stack CPU "
                f"{r.stack_cpu_s:.1f} s"
            )
        elif r.stage == "merge":
            notes.append(
                f"- merge @ {r.size:,}: collect_each {r.details['collect_job_outputs_s']:.2f} s + "
                f"merge_each {r.details['merge_results_s']:.2f} s over {r.bytes / 1e6:,.1f} MB of .jsonl.out; "
                f"client CPU {r.details['client_cpu_s']:.1f} s, local stack CPU {r.stack_cpu_s:.1f} s"
            )
        elif r.stage == "prep_limit":
            notes.append(
                f"- prep_limit @ {r.size:,}: JSONL equal to ours (sha256 per shard); canonical parts "
                f"{r.details['parts_bytes'] / 1e6:,.1f} MB (ours {r.details['ours_parts_bytes'] / 1e6:,.1f} MB)"
            )
    return notes


def e2e_lines(run: StageRun, poll_seconds: float) -> list[str]:
    d = run.details
    calls = sum(d["bedrock_calls"].values())
    per_job = calls / d["jobs"] if d["jobs"] else float("nan")
    by_stage = ", ".join(f"{k} {v:.1f}" for k, v in d["step_s_by_stage"].items())
    by_call = ", ".join(f"{k} {v}" for k, v in sorted(d["bedrock_calls"].items()))
    wall_verdict = "met" if run.seconds < E2E_LIMIT_S else f"missed by {run.seconds - E2E_LIMIT_S:.0f} s"
    calls_verdict = "met" if per_job <= CALLS_PER_JOB_LIMIT else "missed"
    return [
        "| measure | value | target |",
        "|---|---:|---|",
        f"| wall time (`run_pipelines`) | {run.seconds:.1f} s ({run.rows / run.seconds:,.0f} rows/s) | "
        f"< {E2E_LIMIT_S:.0f} s: {wall_verdict} |",
        f"| pipeline steps (Σ STEP_START → STEP_SUCCESS/FAILURE) | {d['step_s']:.1f} s ({by_stage}) | |",
        f"| Dagster run overhead (Σ runs − Σ steps) | {d['run_s'] - d['step_s']:.1f} s | |",
        f"| outside runs: sensor ticks, automation evaluations, polling every {poll_seconds:g} s "
        f"(wall − Σ runs) | {run.seconds - d['run_s']:.1f} s | |",
        f"| local stack CPU (emulator + moto S3/DynamoDB, its own process) | {run.stack_cpu_s:.1f} s | |",
        f"| runs / sensor ticks | {d['runs']} / {d['sensor_ticks']} | |",
        f"| Bedrock control-plane calls | {calls} ({by_call}) | |",
        f"| bedrock-runtime calls (on-demand retries) | {sum(d['runtime_calls'].values())} | |",
        f"| batch jobs; calls per job | {d['jobs']} ({d['shards']} shards); {per_job:.2f} | "
        f"≤ {CALLS_PER_JOB_LIMIT:g}: {calls_verdict} |",
        f"| rows succeeded / failed | {d['succeeded']:,} / {d['failed']:,} ({d['errors']}) | |",
        f"| retry rounds; records retried (in batch jobs / on demand) | {d['retry_rounds']}; {d['retried']:,} "
        f"({d['resent_in_batch_jobs']:,} / {d['resent_on_demand']:,}) | |",
        f"| peak RSS of the run's process | {run.peak_rss_mb:,.0f} MB | |",
    ]


def e2e_json(run: StageRun) -> dict[str, Any]:
    d = run.details
    calls = sum(d["bedrock_calls"].values())
    return {
        "rows": run.rows,
        "wall_s": run.seconds,
        "step_s": d["step_s"],
        "step_s_by_stage": d["step_s_by_stage"],
        "dagster_run_overhead_s": d["run_s"] - d["step_s"],
        "outside_runs_s": run.seconds - d["run_s"],
        "stack_cpu_s": run.stack_cpu_s,
        "runs": d["runs"],
        "sensor_ticks": d["sensor_ticks"],
        "bedrock_calls": d["bedrock_calls"],
        "runtime_calls": d["runtime_calls"],
        "jobs": d["jobs"],
        "calls_per_job": calls / d["jobs"] if d["jobs"] else None,
        "succeeded": d["succeeded"],
        "failed": d["failed"],
        "retry_rounds": d["retry_rounds"],
        "peak_rss_mb": run.peak_rss_mb,
        "met_wall": run.seconds < E2E_LIMIT_S,
        "met_calls_per_job": bool(d["jobs"]) and calls / d["jobs"] <= CALLS_PER_JOB_LIMIT,
    }


def markdown(
    runs: list[StageRun], sizes: list[int], e2e: StageRun | None, poll_seconds: float, repeats: int
) -> list[str]:
    each = "one run of each stage" if repeats == 1 else f"the fastest of {repeats} runs of each stage"
    out = [
        "### Ours vs the physical limit + the S3 floor (same files, one run)",
        "",
        f"Seconds of the measured work in {each}, each in its own process.",
        "",
        "| stage | rows | ours s | limit s | S3 floor s | ours ÷ (limit + floor) | target (allowed) | result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        *(c.line() for c in comparisons(runs, sizes)),
    ]
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        out += [
            "",
            "### Peak RSS per stage (each stage in its own process)",
            "",
            f"| stage | MB @ {small:,} | MB @ {large:,} | {large:,} / {small:,} | "
            f"ours: < {RSS_LIMIT_MB:,} MB @ {large:,} and ≤ {RSS_GROWTH_LIMIT}× |",
            "|---|---:|---:|---:|---|",
            *(g.line() for g in rss_growth(runs, small, large)),
        ]
    if e2e is not None:
        out += [
            "",
            f"### End to end through Dagster: {e2e.rows:,} rows (local stack, time scale 0, 1% emulated record errors)",
            "",
            *e2e_lines(e2e, poll_seconds),
        ]
    out += ["", "What was counted:", *transfer_notes(runs), "", "Definitions:", *(f"- {d}" for d in DEFINITIONS)]
    return out


def report_json(runs: list[StageRun], sizes: list[int], e2e: StageRun | None) -> dict[str, Any]:
    return {
        "definitions": DEFINITIONS,
        "comparisons": [c.json() for c in comparisons(runs, sizes)],
        "peak_rss": [g.json() for g in rss_growth(runs, sizes[0], sizes[-1])] if len(sizes) > 1 else [],
        "e2e": e2e_json(e2e) if e2e else None,
    }
