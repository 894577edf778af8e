"""AWS's own sample beside ours: ``python -m bench.aws_sample --sample-dir DIR --sample-python PY``.

The sample is aws-samples/amazon-bedrock-samples, ``poc-to-prod/bedrock-batch-orchestrator/lambda``: its
``preprocess.lambda_handler`` (source -> JSONL batch inputs + an input Parquet per job) and
``postprocess.lambda_handler`` (one finished job's ``.jsonl.out`` -> a Parquet joined onto its inputs). Its
code is never part of this repository: ``--sample-dir`` is the user's checkout of that ``lambda`` folder and
``--sample-python`` a virtualenv with its ``requirements.txt`` installed.

Both sides run against the same local stack (``bench.run.Stack``: moto S3/DynamoDB + our Bedrock emulator,
its own process) on the same data: the N-row SimpleCoT-like Parquet of ``bench.stages gen`` at
``s3://bench/source/simplecot-N.parquet``. Measured, in ``--pairs`` alternating pairs (even pairs the sample
first, odd pairs ours first):

- **sample prep**: a child process of ``--sample-python`` imports ``preprocess`` (excluded: the handler's
  module builds its boto3 client at import) and calls ``lambda_handler(event, None)`` once with the Step
  Functions state input the sample documents (``JobInput``): ``s3_uri`` = the source Parquet (the sample reads
  Parquet from S3 itself, so no conversion), ``model_id`` = ours' Claude model, ``prompt_id``,
  ``job_name_prefix``, ``max_records_per_job`` = ours' 50,000 records per shard.
- **ours prep**: ``python -m bench.stages prep`` (``prepare_dataset`` + ``write_shard_inputs``).
- **sample post**: a child imports ``postprocess`` and calls ``lambda_handler(task_item, None)`` once per job,
  one after another in that one process (a warm Lambda container taking the Map's items in turn), each with
  the ``TaskItem`` the Map hands it (``job_arn``, ``model_id``, ``input_parquet_path``, ``s3_uri_output``,
  ``status``, ``error_message``, ``task_token``) built from that pair's preprocess result.
- **ours merge**: ``python -m bench.stages merge`` (``collect_each`` + ``merge_each`` over every shard).

Figures: ``seconds`` and ``cpu_s`` are what each child reports of its own work, imports and the S3 client's
creation excluded alike: ``bench.stages`` takes ``time.process_time()`` after its imports and making its S3
client, around the stage function (its ``seconds`` is the stage's work); the sample's child takes
``time.perf_counter()`` / ``time.process_time()`` after importing the handler's module, around the handler
call(s). Besides, the parent records each child's whole
process (interpreter start and imports included): wall, and CPU as the ``resource.getrusage(RUSAGE_CHILDREN)``
delta (user + sys), and the local stack's CPU delta. No peak RSS: a child's ``ru_maxrss`` carries the
parent's peak across fork/exec, and this parent holds the outputs it splices. Ratios are sample / ours, per pair; the summary gives
each figure's median and the median of the per-pair ratios.

Untimed setup: ``gen``, the source put into S3, one ours ``prep`` and ``mkout`` (ours' Bedrock-style
``.jsonl.out`` per shard where its job wrote). After each pair's preps, the sample's ``.jsonl.out`` files are
made from ours' (its record ids are fresh uuid4s each run): line for line the same model output or error
for the same source row, in ours' (shuffled) order, spliced onto the sample's own request line as Bedrock
echoes it, put at ``<s3_uri_output>/<job id>/NNNN.jsonl.out`` (with a ``manifest.json.out``), the layout
its postprocess lists (suffix ``.jsonl.out``). The sample's job cuts (50,000 rows) must equal ours' shards.

Differences (what the sample does otherwise, and how the comparison is kept fair):

- Prompt: by default the sample's ``prompt_id_to_template`` gets ours' template (``Task category: {task}\\n\\n
  {source}``) under ``bench_text``, registered in the child before the call (the sample's documented way to add
  a template); ``--prompt-id question_answering`` uses the sample's own SimpleCoT template (~0.9 kB more text
  per line). The sample sends no system prompt and ``max_tokens`` 1024; ours a system prompt and 512. Its
  JSONL is ``json.dumps`` per record (spaces after separators, non-ASCII escaped as ``\\uXXXX``).
- Record ids: the sample adds a uuid4 ``record_id`` column; ours derives ids from source positions.
- What is written: the sample writes per job a pandas/awswrangler input Parquet (source columns +
  ``record_id``) and the JSONL; ours a canonical Parquet part (source columns + id + lineage) and the JSONL
  staged beside it, then copied in S3 where the job reads it (S3's work, not the client's), plus its shard
  index. Post: the sample writes one Parquet per job (``record_id``, ``response`` = the last
  content block's text or null for an error line, + the input columns; inner join on ``record_id``); ours
  writes per shard an outputs Parquet (the typed model output, the error) and the merged Parquet, and checks
  every input row is merged once.
- Job status: ~1% of lines are errors, so Bedrock would report PartiallyCompleted; the sample's
  ``get_batch_inference_job`` treats that as a failure and would never postprocess such a job. Its post is
  given ``status`` Completed and ``error_message`` None, so it processes the same outputs ours merges.
- Concurrency: on AWS the sample's Map may run the post Lambdas in parallel (10 GB each); here they run in
  turn in one process on the same 2 cores, as ours' merge does its shards.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.run import ROOT, Stack, load_average, machine_info
from bench.stages import BUCKET, CLAUDE, SHARD_RECORDS, TEMPLATE, ShardFacts, outputs_dir, parquet_path, source_key

BENCH_PROMPT_ID = "bench_text"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{job_id}"
SAMPLE_PREFIXES = ("batch_inputs_parquet", "batch_inputs_json", "batch_outputs_json", "batch_output_parquet")
NO_COUNTERPART = b',"error":{"errorCode":400,"errorMessage":"[bench] the row has no line in ours\' outputs"}}'

# Run by --sample-python: stdlib and the sample's code only. argv[1] is a JSON file naming the sample dir,
# the handler's module, templates to register and the events.
CHILD = """
import importlib, json, resource, sys, time
spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["sample_dir"])
module = importlib.import_module(spec["module"])
import prompt_templates
prompt_templates.prompt_id_to_template.update(spec["templates"])
cpu0, t0 = time.process_time(), time.perf_counter()
results = [module.lambda_handler(event, None) for event in spec["events"]]
seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "client_cpu_s": cpu, "maxrss_kb": maxrss, "results": results}))
"""


def say(msg: str) -> None:
    print(f"[bench.aws_sample] {msg}", file=sys.stderr, flush=True)


# ---- the sample's events ------------------------------------------------------------------------


def job_name_prefix(rows: int) -> str:
    return f"aws-sample-{rows}"


@dataclass(frozen=True)
class PreprocessEvent:
    """The state machine's input, the sample's ``JobInput`` (an S3 dataset, a text model)."""

    s3_uri: str
    job_name_prefix: str
    model_id: str
    prompt_id: str
    max_records_per_job: int

    @classmethod
    def for_rows(cls, rows: int, prompt_id: str = BENCH_PROMPT_ID) -> PreprocessEvent:
        return cls(f"s3://{BUCKET}/{source_key(rows)}", job_name_prefix(rows), CLAUDE, prompt_id, SHARD_RECORDS)


@dataclass(frozen=True)
class JobConfig:
    """One job of the sample's preprocess result (``{"jobs": [JobConfig, ...]}``)."""

    model_id: str
    job_name: str
    input_parquet_path: str
    s3_uri_input: str
    s3_uri_output: str

    @classmethod
    def parse_result(cls, result: dict[str, Any]) -> list[JobConfig]:
        return [cls(**{f: job[f] for f in cls.__dataclass_fields__}) for job in result["jobs"]]


def job_id(index: int) -> str:
    """A Bedrock-like job id (12 lowercase alphanumerics), the last segment of the job's ARN."""
    return f"sample{index:06d}"


@dataclass(frozen=True)
class TaskItem:
    """What the postprocess Map hands each Lambda: a finished job as ``get_batch_inference_job`` records it."""

    job_arn: str
    model_id: str
    input_parquet_path: str
    s3_uri_output: str
    status: str
    error_message: str | None
    task_token: str

    @classmethod
    def finished(cls, job: JobConfig, index: int) -> TaskItem:
        # Completed, no error message: the job's ~1% error lines would make Bedrock say PartiallyCompleted,
        # which the sample treats as a failure (no postprocess); see the module docstring.
        arn = JOB_ARN.format(job_id=job_id(index))
        return cls(arn, job.model_id, job.input_parquet_path, job.s3_uri_output, "Completed", None, f"token-{index}")

    def output_dir(self) -> str:
        """Where Bedrock writes the job's files: ``<s3_uri_output>/<job id>/`` (the sample lists under it)."""
        return self.s3_uri_output.rstrip("/") + "/" + self.job_arn.rsplit("/", 1)[1] + "/"

    def output_uri(self, job: JobConfig) -> str:
        """Bedrock's name for the job's output: the input file's name + ``.out``."""
        return self.output_dir() + job.s3_uri_input.rsplit("/", 1)[1] + ".out"


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


# ---- the sample's .jsonl.out, from ours' ---------------------------------------------------------


def record_position(line: bytes) -> int:
    """The source position of ours' record id (``r`` + 11 digits) at the head of an output line."""
    start = line.index(b'"recordId":"') + len(b'"recordId":"')
    return int(line[start + 1 : line.index(b'"', start)])


def output_tail(line: bytes) -> bytes:
    """What Bedrock appended to the request line: ``,"modelOutput":{...}}`` or ``,"error":{...}}``."""
    at = line.find(b',"modelOutput":')
    if at < 0:
        at = line.rfind(b',"error":{')
    if at < 0:
        raise ValueError(f"no modelOutput nor error in {line[:80]!r}...")
    return line[at:]


@dataclass(frozen=True)
class SplicedOutput:
    body: bytes
    lines: int
    unmatched: int  # the sample's rows ours had no line for (rows ours rejects): given an error line


def splice_outputs(sample_requests: Sequence[bytes], first_position: int, ours_out: Iterable[bytes]) -> SplicedOutput:
    """The sample's ``.jsonl.out``: ours' output for each source row, in ours' order, on the sample's request.

    ``sample_requests[k]`` is the sample's request line for source position ``first_position + k``.
    """
    lines: list[bytes] = []
    seen = [False] * len(sample_requests)
    for line in ours_out:
        if not line.strip():
            continue
        k = record_position(line) - first_position
        if not 0 <= k < len(sample_requests):
            raise ValueError(f"ours' record at position {k + first_position} is outside the sample's job")
        seen[k] = True
        lines.append(sample_requests[k].rstrip()[:-1] + output_tail(line.rstrip(b"\n")))
    missing = [k for k, done in enumerate(seen) if not done]
    lines += [sample_requests[k].rstrip()[:-1] + NO_COUNTERPART for k in missing]
    return SplicedOutput(b"".join(line + b"\n" for line in lines), len(lines), len(missing))


def check_cuts(jobs_rows: Sequence[int], shards: Sequence[ShardFacts]) -> list[int]:
    """Each job's first source position; the sample's jobs must cut the source where ours' shards do."""
    ours = [s.rows for s in shards]
    if list(jobs_rows) != ours:
        raise RuntimeError(f"the sample's jobs hold {list(jobs_rows)} rows, ours' shards {ours}")
    starts, at = [], 0
    for n in jobs_rows:
        starts.append(at)
        at += n
    return starts


def read_lines(s3: Any, uri: str) -> list[bytes]:
    body = s3.get_object(Bucket=BUCKET, Key=split_uri(uri)[1])["Body"].read()
    return [line for line in body.split(b"\n") if line.strip()]


@dataclass(frozen=True)
class SampleOutputs:
    items: list[TaskItem]  # the postprocess events, one per job
    jsonl_bytes: int  # of the sample's JSONL inputs (beside ours' prep ``bytes``)
    unmatched: int


def put_sample_outputs(s3: Any, work: Path, rows: int, jobs: list[JobConfig]) -> SampleOutputs:
    """Untimed: the sample's ``.jsonl.out`` for this run's jobs, where Bedrock would put them; its TaskItems."""
    from bench.stages import load_shards

    shards = load_shards(work, rows)
    requests = [read_lines(s3, job.s3_uri_input) for job in jobs]
    starts = check_cuts([len(r) for r in requests], shards)
    items, unmatched = [], 0
    for index, (job, shard) in enumerate(zip(jobs, shards)):
        item = TaskItem.finished(job, index)
        with open(outputs_dir(work, rows) / f"{shard.key}.jsonl.out", "rb") as ours:
            spliced = splice_outputs(requests[index], starts[index], ours)
        unmatched += spliced.unmatched
        s3.put_object(Bucket=BUCKET, Key=split_uri(item.output_uri(job))[1], Body=spliced.body)
        manifest = {"totalRecordCount": spliced.lines, "processedRecordCount": spliced.lines}
        s3.put_object(
            Bucket=BUCKET, Key=split_uri(item.output_dir())[1] + "manifest.json.out", Body=json.dumps(manifest)
        )
        items.append(item)
    jsonl_bytes = sum(len(line) + 1 for lines in requests for line in lines) - len(requests)  # '\n'-joined
    return SampleOutputs(items, jsonl_bytes, unmatched)


def check_sample_rows(s3: Any, work: Path, rows: int, jobs: list[JobConfig]) -> None:
    """Untimed: the sample's input Parquet files hold the source's rows, in order (its ``source`` column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for job in jobs:
        body = s3.get_object(Bucket=BUCKET, Key=split_uri(job.input_parquet_path)[1])["Body"].read()
        parts.append(pq.read_table(io.BytesIO(body), columns=["source"]).column("source"))
    source = pq.read_table(parquet_path(work, rows), columns=["source"]).column("source")
    if not pa.chunked_array([c for p in parts for c in p.chunks], source.type).equals(source):
        raise RuntimeError("the sample's input Parquet files do not hold the source's rows in order")


def parquet_rows(s3: Any, uris: Iterable[str]) -> int:
    import pyarrow.parquet as pq

    total = 0
    for uri in uris:
        body = s3.get_object(Bucket=BUCKET, Key=split_uri(uri)[1])["Body"].read()
        total += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    return total


# ---- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """One measured child: its own figures (imports excluded) and its whole process's."""

    side: str  # "sample" or "ours"
    stage: str  # "prep" or "post"
    seconds: float  # the work's wall time, as the child reports it
    cpu_s: float  # the child's CPU in the work, every thread (time.process_time)
    proc_wall_s: float  # the child process, interpreter start and imports included
    proc_cpu_s: float  # getrusage(RUSAGE_CHILDREN) delta, user + sys
    stack_cpu_s: float  # the local stack's CPU meanwhile
    result: dict[str, Any] = field(default_factory=dict, repr=False)


def run_child(cmd: list[str], env: dict[str, str], log_path: Path, stack_cpu: Callable[[], float]) -> dict[str, Any]:
    """Run a child; its last stdout line (JSON) with the parent's view of the process added."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, t0 = stack_cpu(), time.perf_counter()
    with open(log_path, "w") as err:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = "\n".join(log_path.read_text().splitlines()[-20:])
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}); log {log_path}:\n{tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["_proc_wall_s"] = wall
    result["_proc_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["_stack_cpu_s"] = stack_cpu() - cpu0
    return result


def measure(side: str, stage: str, result: dict[str, Any]) -> Measure:
    return Measure(
        side,
        stage,
        result.pop("seconds"),
        result.pop("client_cpu_s"),
        result.pop("_proc_wall_s"),
        result.pop("_proc_cpu_s"),
        result.pop("_stack_cpu_s"),
        result,  # the rest of the child's line (its ru_maxrss holds the parent's peak too: not reported)
    )


class Harness:
    """The two sides' children against one local stack."""

    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.logs = args.work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.templates = {BENCH_PROMPT_ID: TEMPLATE}
        self.count = 0

    def _log(self, name: str) -> Path:
        self.count += 1
        return self.logs / f"aws_sample-{self.count:02d}-{name}.log"

    def ours(self, stage: str) -> Measure:
        cmd = [sys.executable, "-m", "bench.stages", stage, "--rows", str(self.args.rows)]
        cmd += ["--work-dir", str(self.args.work_dir)]
        result = run_child(cmd, self.stack.env(), self._log(f"ours-{stage}"), self.stack.cpu_seconds)
        return measure("ours", "post" if stage == "merge" else stage, result)

    def sample(self, module: str, events: list[dict[str, Any]]) -> Measure:
        spec = {"sample_dir": str(self.args.sample_dir), "module": module, "templates": self.templates}
        spec_path = self.args.work_dir / f"aws_sample-{module}.json"
        spec_path.write_text(json.dumps(spec | {"events": events}))
        env = self.stack.env() | {"BUCKET_NAME": BUCKET}
        cmd = [str(self.args.sample_python), "-c", CHILD, str(spec_path)]
        result = run_child(cmd, env, self._log(f"sample-{module}"), self.stack.cpu_seconds)
        return measure("sample", "prep" if module == "preprocess" else "post", result)

    def sample_prep(self) -> tuple[Measure, list[JobConfig]]:
        event = PreprocessEvent.for_rows(self.args.rows, self.args.prompt_id)
        run = self.sample("preprocess", [asdict(event)])
        return run, JobConfig.parse_result(run.result["results"][0])

    def sample_post(self, items: list[TaskItem]) -> Measure:
        run = self.sample("postprocess", [asdict(item) for item in items])
        written = parquet_rows(self.stack.s3(), [r["output_path"] for r in run.result["results"]])
        if written != self.args.rows:
            raise RuntimeError(f"the sample's postprocess wrote {written} rows for {self.args.rows}")
        return run


# ---- pairs and the report ------------------------------------------------------------------------


def sample_first(pair: int) -> bool:
    """Alternate which side runs first: the sample in even pairs, ours in odd ones."""
    return pair % 2 == 0


@dataclass(frozen=True)
class Pair:
    index: int
    sample_prep: Measure
    ours_prep: Measure
    sample_post: Measure
    ours_merge: Measure

    @property
    def first(self) -> str:
        return "sample" if sample_first(self.index) else "ours"

    def ratios(self) -> dict[str, float]:
        """Sample / ours: prep and post, wall and CPU."""
        return {
            "prep_s": self.sample_prep.seconds / self.ours_prep.seconds,
            "prep_cpu": self.sample_prep.cpu_s / self.ours_prep.cpu_s,
            "post_s": self.sample_post.seconds / self.ours_merge.seconds,
            "post_cpu": self.sample_post.cpu_s / self.ours_merge.cpu_s,
        }

    def figures(self) -> list[float]:
        runs = (self.sample_prep, self.ours_prep, self.sample_post, self.ours_merge)
        return [x for m in runs for x in (m.seconds, m.cpu_s)] + list(self.ratios().values())


def in_order(
    first_is_sample: bool, sample: Callable[[], Measure], ours: Callable[[], Measure]
) -> tuple[Measure, Measure]:
    """(sample's, ours') measure, run in the pair's order."""
    if first_is_sample:
        s = sample()
        return s, ours()
    o = ours()
    return sample(), o


def run_pair(harness: Harness, index: int) -> Pair:
    jobs: list[JobConfig] = []

    def sample_prep() -> Measure:
        run, found = harness.sample_prep()
        jobs.extend(found)
        return run

    first = sample_first(index)
    s_prep, o_prep = in_order(first, sample_prep, lambda: harness.ours("prep"))
    s3 = harness.stack.s3()
    if index == 0:
        check_sample_rows(s3, harness.args.work_dir, harness.args.rows, jobs)
    outputs = put_sample_outputs(s3, harness.args.work_dir, harness.args.rows, jobs)
    if index == 0 or outputs.unmatched:
        mb = outputs.jsonl_bytes / 1e6, o_prep.result.get("bytes", 0) / 1e6
        say(f"JSONL inputs: the sample's {mb[0]:.1f} MB, ours' {mb[1]:.1f} MB; {outputs.unmatched} rows unmatched")
    s_post, o_merge = in_order(first, lambda: harness.sample_post(outputs.items), lambda: harness.ours("merge"))
    pair = Pair(index, s_prep, o_prep, s_post, o_merge)
    say(f"pair {index + 1}: " + "  ".join(f"{k} {v:.2f}×" for k, v in pair.ratios().items()))
    return pair


HEADER = [
    "| pair | first | sample prep s / CPU | ours prep s / CPU | sample post s / CPU | ours merge s / CPU "
    "| prep ratio s / CPU | post ratio s / CPU |",
    "|---|---|---|---|---|---|---|---|",
]


def table_row(label: str, first: str, f: Sequence[float]) -> str:
    cells = [f"{f[i]:.2f} / {f[i + 1]:.2f}" for i in range(0, 8, 2)]
    cells += [f"{f[8]:.2f}× / {f[9]:.2f}×", f"{f[10]:.2f}× / {f[11]:.2f}×"]
    return f"| {label} | {first} | " + " | ".join(cells) + " |"


def medians(pairs: Sequence[Pair]) -> list[float]:
    """Each figure's median over the pairs (the ratios: the median of the per-pair ratios)."""
    return [statistics.median(column) for column in zip(*(p.figures() for p in pairs))]


def markdown(pairs: Sequence[Pair]) -> list[str]:
    lines = [*HEADER, *(table_row(str(p.index + 1), p.first, p.figures()) for p in pairs)]
    lines.append(table_row("median", "", medians(pairs)))
    lines += ["", "Whole child processes (interpreter start + imports included), median wall / CPU (rusage):"]
    for name in ("sample_prep", "ours_prep", "sample_post", "ours_merge"):
        runs = [getattr(p, name) for p in pairs]
        wall = statistics.median(m.proc_wall_s for m in runs)
        cpu = statistics.median(m.proc_cpu_s for m in runs)
        stack = statistics.median(m.stack_cpu_s for m in runs)
        lines.append(f"- {name}: {wall:.2f} s / {cpu:.2f} s CPU; local stack CPU meanwhile {stack:.2f} s")
    return lines


# ---- main --------------------------------------------------------------------------------------


def setup(harness: Harness) -> None:
    """Untimed: the data, the source in S3, one ours prep and mkout (ours' outputs where its jobs wrote)."""
    args, stack = harness.args, harness.stack
    for stage in ("gen", "prep", "mkout"):
        say(f"setup: {stage}")
        cmd = [sys.executable, "-m", "bench.stages", stage, "--rows", str(args.rows), "--work-dir", str(args.work_dir)]
        run_child(cmd, stack.env(), harness._log(f"setup-{stage}"), stack.cpu_seconds)
        if stage == "gen":
            stack.put_file(parquet_path(args.work_dir, args.rows), source_key(args.rows))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.aws_sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sample-dir", type=Path, required=True, help="the sample's lambda folder (your checkout)")
    ap.add_argument("--sample-python", type=Path, required=True, help="python of a venv with its requirements")
    ap.add_argument("--rows", type=int, default=220_000)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--prompt-id", default=BENCH_PROMPT_ID, help=f"{BENCH_PROMPT_ID} (ours' template) or the sample's")
    ap.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    args.work_dir, args.sample_dir = args.work_dir.resolve(), args.sample_dir.resolve()
    if not (args.sample_dir / "preprocess.py").is_file() or not (args.sample_dir / "postprocess.py").is_file():
        ap.error(f"no preprocess.py / postprocess.py in {args.sample_dir}")
    return args


def side_by_side(stack: Stack, args: argparse.Namespace) -> list[Pair]:
    """``args.pairs`` alternating pairs at ``args.rows`` on a running stack (``bench.run`` calls this too); the
    objects both sides wrote are deleted afterwards."""
    harness = Harness(args, stack)
    try:
        setup(harness)
        return [run_pair(harness, i) for i in range(args.pairs)]
    finally:
        for prefix in (*(f"{p}/{job_name_prefix(args.rows)}/" for p in SAMPLE_PREFIXES), f"prep-{args.rows}/"):
            stack.delete_prefix(prefix)


def sample_args(
    sample_dir: Path, sample_python: Path, rows: int, pairs: int, work_dir: Path, prompt_id: str = BENCH_PROMPT_ID
) -> argparse.Namespace:
    """What ``side_by_side`` reads, for a caller without this module's command line."""
    return argparse.Namespace(
        sample_dir=sample_dir.resolve(), sample_python=sample_python, rows=rows, pairs=pairs,
        prompt_id=prompt_id, work_dir=work_dir.resolve(),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join([sys.executable, "-m", "bench.aws_sample", *(sys.argv[1:] if argv is None else argv)])
    machine = machine_info()
    print(f"command: {command}\nmachine: {machine['nproc']} CPUs ({machine['cpu']}), Python {machine['python']}")
    print(f"load average (1/5/15 min) at the start: {load_average()}", flush=True)
    stack = Stack(args.work_dir / "local-stack-aws-sample.log")
    pairs: list[Pair] = []
    try:
        stack.wait_healthy()
        stack.s3().create_bucket(Bucket=BUCKET)
        pairs = side_by_side(stack, args)
    finally:
        stack.stop()
    lines = ["", *markdown(pairs), "", f"load average (1/5/15 min) at the end: {load_average()}"]
    print("\n".join(lines), flush=True)
    report = {"command": command, "machine": machine, "pairs": [asdict(p) for p in pairs], "markdown": lines}
    (args.work_dir / "aws_sample.json").write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
