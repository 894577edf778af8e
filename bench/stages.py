"""One benchmark stage per process: ``python -m bench.stages STAGE --rows N --work-dir DIR``.

Each stage prints one JSON line on stdout (its last line): ``seconds`` of the measured work, ``rows``,
``bytes``, ``maxrss_kb`` (``report.peak_rss_kb``: this process's own peak RSS), ``client_cpu_s`` (its CPU in the
stage, every thread) and its details; progress goes to stderr. S3 is boto3 with the endpoint from the environment: the parent points it at the local stack,
which runs in a process of its own (its memory and CPU are not in these figures).

The data: N SimpleCoT-like rows as one Parquet file, on local disk and in S3
(``s3://bench/source/``); the Claude text pipeline of ``pipeline_spec``, 50,000-record shards.

- ``prep`` (ours): ``raw_dataset.prepare_dataset(step)`` then ``jsonl_shards.write_shard_inputs(step,
  shards)`` over the plan (each shard's upload behind the next one's rendering), in this one process with the pipeline's S3 access, as one
  Dagster run with the in-process executor does them.
- ``prep_limit`` (physical limit): ``ParquetFile.iter_batches`` of the local copy of the same source;
  the same request lines built with Arrow compute only (``records.json_escape`` of the column values,
  ``pc.binary_join_element_wise`` with the body's fixed frame); per shard of ours' plan a JSONL file and
  a canonical Parquet part (the rows with their record id and lineage) on local disk. Not timed: each
  JSONL file must equal ours byte for byte (sha256 against ours' shard digest).
- ``prep_floor`` (S3 floor): plain boto3 against the same local S3, no processing: GET the source
  object, PUT ours' canonical parts, PUT ours' JSONL inputs.
- ``merge`` (ours): ``batch_job_outputs.collect_each(step, attempts)`` over every shard, then
  ``merged_results.merge_each(step, attempts)``, as the merge stage's run does, in this one process.
- ``merge_limit``: per shard ``pyarrow.json.read_json`` of the same ``.jsonl.out`` file on local disk
  (explicit schema: recordId, modelOutput as the adapter types it, error), a join onto the shard's input
  rows (ours' canonical part on local disk; ``pc.index_in`` + ``take``, input order) and
  ``pq.write_table`` to local disk.
- ``merge_floor``: GET the ``.jsonl.out`` objects, GET ours' canonical parts, PUT ours' outputs Parquet,
  PUT ours' merged Parquet.
- ``e2e``: the whole pipeline through Dagster (``runner.run_pipelines``; ``seconds`` is its wall time),
  broken down from the instance's event log: ``step_s`` = Σ STEP_START -> STEP_SUCCESS/FAILURE (per
  stage tag in ``step_s_by_stage``), ``run_s`` = Σ each run's first to last event; so Dagster's run
  overhead is ``run_s - step_s`` and the time outside runs (sensor ticks, automation evaluations, the
  runner's state reads, polling waits) ``seconds - run_s``. Bedrock calls are ``RunSummary``'s, split
  into the control plane and bedrock-runtime (on-demand retries); ``jobs`` counts CreateModelInvocationJob.

A floor uses, per direction, whichever of ``get_object`` (streamed, discarded) / ``download_file`` and
``put_object`` / ``upload_file`` was faster on shard 0's canonical part just before; what it PUTs is
fetched first, untimed. Setup stages (not measured): ``gen`` writes the Parquet (cached under DIR/data);
``mkout`` fetches ours' canonical parts and writes Bedrock-style ``.jsonl.out`` files for them (cached
while the shard digests stay), then puts them where a finished job would have (``jobs/<shard>/<job id>/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset  # noqa: F401  (pq.read_table's lazy import stays out of the timings)
import pyarrow.json as pj
import pyarrow.parquet as pq

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.graph.batch_job_outputs import collect_each
from bedrock_assets.graph.jsonl_shards import write_shard_inputs
from bedrock_assets.graph.merged_results import merge_each
from bedrock_assets.graph.raw_dataset import prepare_dataset
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.pipeline import Pipeline, Step
from bedrock_assets.records import INPUT_ERROR, RECORD_ID, SOURCE_FILE, SOURCE_ROW, derived_record_ids, json_escape
from bedrock_assets.resources import bedrock_resources
from bedrock_assets.shards import BATCH_ROWS, load_shard_index
from bedrock_assets.spec import PipelineSpec, parse_pipeline
from bedrock_assets.storage import S3Access
from bedrock_assets.uris import S3Location
from bench.report import peak_rss_kb

if TYPE_CHECKING:
    from bedrock_assets.local_stack.synthetic import SyntheticResult

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatchInference"
TEMPLATE = "Task category: {task}\n\n{source}"
SYSTEM = "You are a careful assistant. Reason step by step, then state the final answer."
MAX_TOKENS = 512
SHARD_RECORDS = 50_000
BUCKET = "bench"
ERROR_RATE = 0.01
BLOCK_BYTES = 8 << 20
RUNTIME_OPS = ("InvokeModel", "Converse")  # bedrock-runtime (on-demand retries), not the control plane
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/bench-{shard}"


def log(msg: str) -> None:
    print(f"[bench.stages] {msg}", file=sys.stderr, flush=True)


def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


# ---- where things are -------------------------------------------------------------------------


def parquet_path(work: Path, rows: int) -> Path:
    return work / "data" / f"simplecot-{rows}.parquet"


def source_key(rows: int) -> str:
    return f"source/simplecot-{rows}.parquet"


def outputs_dir(work: Path, rows: int) -> Path:
    """Ours' canonical parts (``<shard>.rows.parquet``), the ``.jsonl.out`` files and ``shards.json``."""
    return work / "data" / f"merge-text-{rows}"


def out_dir(work: Path, name: str) -> Path:
    path = work / "out" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def pipeline_spec(rows: int, prefix: str = "prep", name: str = "bench_text") -> PipelineSpec:
    return parse_pipeline(
        {
            "name": name,
            "source": {"uri": f"s3://{BUCKET}/{source_key(rows)}", "format": "parquet"},
            "model": {"id": CLAUDE},
            "prompt": {"template": TEMPLATE, "system": SYSTEM},
            "inference": {"max_tokens": MAX_TOKENS},
            "output_uri": f"s3://{BUCKET}/{prefix}-{rows}",
            "shards": {"max_records": SHARD_RECORDS},
            "role_arn": ROLE,
        }
    )


def assets_step(spec: PipelineSpec) -> Step:
    """The pipeline as its assets' steps get it, over the default resources."""
    resources = bedrock_resources()
    return Pipeline.of(spec).step(resources["s3"], resources["bedrock"])


@dataclass(frozen=True)
class ShardFacts:
    """One shard of ours' plan (its ``.jsonl.out`` file is ``<key>.jsonl.out`` next to ``shards.json``)."""

    key: str
    rows: int
    records: int
    digest: str  # sha256 of ours' JSONL input

    def attempt(self, spec: PipelineSpec) -> JobAttempt:
        """The finished job attempt ``collect_each`` and ``merge_each`` are given."""
        layout = PipelineLayout.for_uri(spec.output_uri)
        return JobAttempt(
            pipeline=spec.name,
            shard=self.key,
            attempt=1,
            job_name=f"bench-{self.key}",
            input_digest=self.digest,
            model_id=CLAUDE,
            records=self.records,
            input_uri=layout.shard_input(self.key).uri,
            output_uri=layout.job_output(self.key).uri,
            status=JobStatus.PARTIALLY_COMPLETED,  # ~1% of the lines are errors
            job_arn=JOB_ARN.format(shard=self.key),
        )

    def job_dir(self, spec: PipelineSpec) -> S3Location:
        """Where the finished job wrote: ``jobs/<shard>/<job id>/`` (the ``.jsonl.out`` and the manifest)."""
        return PipelineLayout.for_uri(spec.output_uri).job_output(self.key).join(self.attempt(spec).job_id or "")


def load_shards(work: Path, rows: int) -> list[ShardFacts]:
    return [ShardFacts(**s) for s in json.loads((outputs_dir(work, rows) / "shards.json").read_text())]


# ---- setup ------------------------------------------------------------------------------------


def stage_gen(args) -> dict[str, Any]:
    from bedrock_assets.sample.simplecot import write_simplecot

    path = parquet_path(args.work_dir, args.rows)
    cached = path.exists()
    if not cached:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        write_simplecot(tmp, args.rows, seed=0)
        tmp.rename(path)
    return {"seconds": 0.0, "rows": args.rows, "bytes": path.stat().st_size, "cached": cached}


def stage_mkout(args) -> dict[str, Any]:
    """Ours' canonical parts to local disk, a ``.jsonl.out`` per shard (cached), each put where its job writes."""
    spec = pipeline_spec(args.rows)
    layout = PipelineLayout.for_uri(spec.output_uri)
    s3 = boto3.client("s3")
    plan = load_shard_index(Step.of(spec, S3Access(s3)))
    cache = outputs_dir(args.work_dir, args.rows)
    cache.mkdir(parents=True, exist_ok=True)
    for stale in [*cache.glob("*.parquet"), *cache.glob("*.out")]:
        if stale.name.split(".", 1)[0] not in {info.key for info in plan.shards}:
            stale.unlink()
    for info in plan.shards:
        s3.download_file(BUCKET, layout.shard_rows(info.key).key, str(cache / f"{info.key}.rows.parquet"))
    marker = cache / "outputs.json"
    digests = [info.digest for info in plan.shards]
    cached = marker.exists() and json.loads(marker.read_text()).get("digests") == digests  # the old cache's format too
    if not cached:
        marker.unlink(missing_ok=True)
        for info in plan.shards:
            write_outputs(s3, layout, info.key, cache / f"{info.key}.jsonl.out")
        marker.write_text(json.dumps({"digests": digests}))
    shards = [ShardFacts(info.key, info.rows, info.records, info.digest) for info in plan.shards]
    for shard in shards:
        job = shard.job_dir(spec)
        with open(cache / f"{shard.key}.jsonl.out", "rb") as body:
            s3.put_object(Bucket=BUCKET, Key=job.join("input.jsonl.out").key, Body=body)
        manifest = {"totalRecordCount": shard.records, "processedRecordCount": shard.records}
        s3.put_object(Bucket=BUCKET, Key=job.join("manifest.json.out").key, Body=json.dumps(manifest).encode())
    (cache / "shards.json").write_text(json.dumps([asdict(s) for s in shards]))
    out_bytes = sum(f.stat().st_size for f in cache.glob("*.out"))
    return {"seconds": 0.0, "rows": plan.rows, "bytes": out_bytes, "cached": cached}


def answered_json(answer: SyntheticResult) -> bytes:
    """A synthesized answer's modelOutput (the emulator refusing a request of ours' is a defect to show)."""
    if answer.output_json is None:
        raise RuntimeError(f"the emulator refused a benchmark request: {answer.error}")
    return answer.output_json.encode()


def write_outputs(s3, layout: PipelineLayout, key: str, target: Path) -> None:
    """A Bedrock-style ``.jsonl.out`` from the shard's JSONL input: shuffled, ~1% error lines."""
    from bedrock_assets.local_stack.synthetic import synthesize_batch

    body = s3.get_object(Bucket=BUCKET, Key=layout.shard_input(key).key)["Body"].read()
    requests = [line for line in body.split(b"\n") if line.strip()]
    del body
    rng = np.random.default_rng(int(key.lstrip("s")))
    order = rng.permutation(len(requests))
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as out:
        for start in range(0, len(order), 2048):
            raw = [requests[i] for i in order[start : start + 2048]]
            failed = rng.random(len(raw)) < ERROR_RATE
            ok = [i for i in range(len(raw)) if not failed[i]]
            answers = synthesize_batch(CLAUDE, "InvokeModel", [json.loads(raw[i])["modelInput"] for i in ok])
            outputs = {i: answered_json(a) for i, a in zip(ok, answers)}
            for i, line in enumerate(raw):
                head = line[:-1]  # the request line without its closing brace
                if failed[i]:
                    out.write(
                        head + b',"error":{"errorCode":400,"errorMessage":"Malformed input request: '
                        b'[bench] synthetic model error, please reformat your input and try again."}}\n'
                    )
                else:
                    out.write(head + b',"modelOutput":' + outputs[i] + b"}\n")
    tmp.rename(target)
    log(f"wrote {target.name} ({target.stat().st_size / 1e6:.1f} MB)")


# ---- ours -------------------------------------------------------------------------------------


def stage_prep(args) -> dict[str, Any]:
    spec = pipeline_spec(args.rows)
    step = assets_step(spec)
    t0 = time.perf_counter()
    plan = prepare_dataset(step)
    t1 = time.perf_counter()
    written = [w for _, w in write_shard_inputs(step, plan.shards)]  # as jsonl_shards' run does: uploads behind
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "prepare_dataset_s": t1 - t0,
        "write_shard_input_s": t2 - t1,
        "rows": plan.rows,
        "rejected": plan.rejected,
        "bytes": sum(w.bytes for w in written),
        "shards": len(plan.shards),
    }


def stage_merge(args) -> dict[str, Any]:
    spec = pipeline_spec(args.rows)
    step = assets_step(spec)
    shards = load_shards(args.work_dir, args.rows)
    attempts = [shard.attempt(spec) for shard in shards]
    t0 = time.perf_counter()
    for _ in collect_each(step, attempts):  # as the merge stage's run does: batch_job_outputs, then merged_results
        pass
    t1 = time.perf_counter()
    merged = list(merge_each(step, attempts))
    t2 = time.perf_counter()
    for m in merged:
        if not m.every_row_once:
            raise RuntimeError(f"{m.shard}: merged {m.rows} rows for {m.input_rows} input rows")
    cache = outputs_dir(args.work_dir, args.rows)
    return {
        "seconds": t2 - t0,
        "collect_job_outputs_s": t1 - t0,
        "merge_results_s": t2 - t1,
        "rows": sum(m.rows for m in merged),
        "succeeded": sum(m.succeeded for m in merged),
        "bytes": sum((cache / f"{s.key}.jsonl.out").stat().st_size for s in shards),
        "shards": len(shards),
    }


# ---- physical limit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LineTemplate:
    """A request line (with its newline) as fixed text, JSON-escaped once, around per-row column values."""

    fixed: tuple[str, ...]  # one more than columns: the text before, between and after them
    columns: tuple[str, ...]

    @classmethod
    def for_spec(cls, spec: PipelineSpec) -> LineTemplate:
        adapter = spec.adapter()
        before, after = adapter.request_frame()
        fixed, columns = ['{"recordId":"'], [RECORD_ID]
        fixed.append('","modelInput":' + before)
        if spec.prompt.template is None:
            raise ValueError("the physical limit renders a text template: the benchmark's spec has none")
        for literal, name, _, _ in string.Formatter().parse(spec.prompt.template):
            fixed[-1] += json.dumps(literal, ensure_ascii=False)[1:-1]
            if name is not None:
                columns.append(name)
                fixed.append("")
        fixed[-1] += after + "}\n"
        return cls(tuple(fixed), tuple(columns))

    def render(self, batch: pa.RecordBatch, ids: pa.Array) -> pa.Array:
        values = [ids, *(json_escape(batch.column(c)) for c in self.columns[1:])]
        parts: list[Any] = [self.fixed[0]]
        for value, text in zip(values, self.fixed[1:]):
            parts += [value, text]
        return pc.binary_join_element_wise(*parts, "")


def string_bytes(values: pa.Array) -> memoryview:
    """The characters of a freshly built string array (offset 0) as one buffer."""
    end = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1)[-1]
    return memoryview(values.buffers()[2])[: int(end)]


def shard_slices(batches: Iterable[pa.RecordBatch], sizes: list[int]) -> Iterator[tuple[int, pa.RecordBatch, int]]:
    """(shard index, rows, dataset position of the first) for record batches cut at the shards' row counts."""
    shard, left, position = 0, sizes[0], 0
    for batch in batches:
        start = 0
        while start < batch.num_rows:
            take = min(left, batch.num_rows - start)
            yield shard, batch.slice(start, take), position
            start, position, left = start + take, position + take, left - take
            if left == 0 and shard + 1 < len(sizes):
                shard += 1
                left = sizes[shard]


def canonical_schema(source: pq.ParquetFile) -> pa.Schema:
    """The source's columns and the record id and lineage columns every input row carries."""
    return pa.schema(
        [
            *source.schema_arrow,
            pa.field(RECORD_ID, pa.string()),
            pa.field(SOURCE_FILE, pa.dictionary(pa.int32(), pa.string())),
            pa.field(SOURCE_ROW, pa.int64()),
            pa.field(INPUT_ERROR, pa.string()),
        ]
    )


def canonical_rows(batch: pa.RecordBatch, ids: pa.Array, position: int, uri: str) -> pa.Table:
    n = batch.num_rows
    return (
        pa.Table.from_batches([batch])
        .append_column(RECORD_ID, ids)
        .append_column(SOURCE_FILE, pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([uri])))
        .append_column(SOURCE_ROW, pa.array(np.arange(position, position + n), pa.int64()))
        .append_column(INPUT_ERROR, pa.nulls(n, pa.string()))
    )


def stage_prep_limit(args) -> dict[str, Any]:
    shards = load_shards(args.work_dir, args.rows)
    spec = pipeline_spec(args.rows)
    template = LineTemplate.for_spec(spec)
    target = out_dir(args.work_dir, f"prep_limit-{args.rows}")
    t0 = time.perf_counter()
    # pre_buffer=False: the default caches every column chunk read until the file closes
    source = pq.ParquetFile(parquet_path(args.work_dir, args.rows), pre_buffer=False)
    schema = canonical_schema(source)
    source_uri = spec.source.uri
    if source_uri is None:
        raise ValueError("the benchmark's spec reads no source uri")
    pieces = shard_slices(source.iter_batches(batch_size=BATCH_ROWS), [s.rows for s in shards])
    for index, shard_pieces in groupby(pieces, key=itemgetter(0)):
        key = shards[index].key
        with open(target / f"{key}.jsonl", "wb") as jsonl, pq.ParquetWriter(target / f"{key}.parquet", schema) as part:
            for _, batch, position in shard_pieces:
                ids = derived_record_ids(position, batch.num_rows)
                jsonl.write(string_bytes(template.render(batch, ids)))
                part.write_table(canonical_rows(batch, ids, position, source_uri))
    seconds = time.perf_counter() - t0
    for shard in shards:
        with open(target / f"{shard.key}.jsonl", "rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() != shard.digest:
                raise RuntimeError(f"{shard.key}: the limit's JSONL differs from ours")
    ours_parts = outputs_dir(args.work_dir, args.rows)
    result = {
        "seconds": seconds,
        "rows": sum(s.rows for s in shards),
        "bytes": sum((target / f"{s.key}.jsonl").stat().st_size for s in shards),
        "parts_bytes": sum((target / f"{s.key}.parquet").stat().st_size for s in shards),
        "ours_parts_bytes": sum((ours_parts / f"{s.key}.rows.parquet").stat().st_size for s in shards),
    }
    if not args.keep_data:
        shutil.rmtree(target)
    return result


def stage_merge_limit(args) -> dict[str, Any]:
    spec = pipeline_spec(args.rows)
    error = pa.struct([("errorCode", pa.int64()), ("errorMessage", pa.string())])
    schema = pa.schema([("recordId", pa.string()), ("modelOutput", spec.adapter().output_type), ("error", error)])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    shards = load_shards(args.work_dir, args.rows)
    cache = outputs_dir(args.work_dir, args.rows)
    target = out_dir(args.work_dir, f"merge_limit-{args.rows}")
    rows = size = 0
    t0 = time.perf_counter()
    for shard in shards:
        inputs = pq.read_table(cache / f"{shard.key}.rows.parquet")
        outputs = pj.read_json(cache / f"{shard.key}.jsonl.out", parse_options=options)
        index = pc.index_in(inputs.column(RECORD_ID), value_set=outputs.column("recordId"))
        joined = outputs.drop_columns(["recordId"]).take(index)
        for name in joined.column_names:
            inputs = inputs.append_column(name, joined.column(name))
        pq.write_table(inputs, target / f"{shard.key}.parquet")
        rows += inputs.num_rows
        size += (cache / f"{shard.key}.jsonl.out").stat().st_size
    seconds = time.perf_counter() - t0
    if not args.keep_data:
        shutil.rmtree(target)
    return {"seconds": seconds, "rows": rows, "bytes": size, "shards": len(shards)}


# ---- S3 floor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    what: str
    method: str
    objects: int
    bytes: int
    seconds: float


class S3Floor:
    """Raw GETs and PUTs with plain boto3, by whichever method was faster on a sample object."""

    def __init__(self, scratch: Path, sample_key: str, sample_path: Path, put_prefix: str) -> None:
        self.s3 = boto3.client("s3")
        self.scratch = scratch
        self.put_prefix = put_prefix
        gets = {"get_object": self._get_object, "download_file": self._download_file}
        puts = {"put_object": self._put_object, "upload_file": self._upload_file}
        self.calibration = {name: timed(partial(get, sample_key)) for name, get in gets.items()}
        self.calibration |= {name: timed(partial(put, sample_path, "calibration")) for name, put in puts.items()}
        self.get_method = min(gets, key=self.calibration.__getitem__)
        self.put_method = min(puts, key=self.calibration.__getitem__)
        self._get, self._put = gets[self.get_method], puts[self.put_method]

    def _get_object(self, key: str) -> None:
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        while body.read(BLOCK_BYTES):
            pass

    def _download_file(self, key: str) -> None:
        path = self.scratch / "download"
        self.s3.download_file(BUCKET, key, str(path))
        path.unlink()

    def _put_object(self, path: Path, name: str) -> None:
        with open(path, "rb") as body:
            self.s3.put_object(Bucket=BUCKET, Key=f"{self.put_prefix}/{name}", Body=body)

    def _upload_file(self, path: Path, name: str) -> None:
        self.s3.upload_file(str(path), BUCKET, f"{self.put_prefix}/{name}")

    def fetch(self, keys: list[str]) -> list[Path]:
        """Untimed: ours' objects to local files, for PUTting the same bytes."""
        paths = []
        for key in keys:
            path = self.scratch / key.replace("/", "_")
            self.s3.download_file(BUCKET, key, str(path))
            paths.append(path)
        return paths

    def get(self, what: str, keys: list[str]) -> Transfer:
        size = sum(self.s3.head_object(Bucket=BUCKET, Key=k)["ContentLength"] for k in keys)
        seconds = timed(lambda: [self._get(k) for k in keys])
        return Transfer(what, self.get_method, len(keys), size, seconds)

    def put(self, what: str, paths: list[Path]) -> Transfer:
        seconds = timed(lambda: [self._put(p, f"{what}/{p.name}") for p in paths])
        return Transfer(what, self.put_method, len(paths), sum(p.stat().st_size for p in paths), seconds)


def run_floor(args, gets: dict[str, list[str]], puts: dict[str, list[str]]) -> dict[str, Any]:
    """Time the GETs of ``gets``' keys and the PUTs of ``puts``' objects (fetched first), per category."""
    layout = PipelineLayout.for_uri(pipeline_spec(args.rows).output_uri)
    shards = load_shards(args.work_dir, args.rows)
    sample = layout.shard_rows(shards[0].key).key
    with tempfile.TemporaryDirectory(prefix="bench-floor-", dir=args.work_dir) as tmp:
        floor = S3Floor(
            Path(tmp),
            sample,
            outputs_dir(args.work_dir, args.rows) / f"{shards[0].key}.rows.parquet",
            f"floor-{args.rows}/{args.stage}",
        )
        transfers = [floor.get(what, keys) for what, keys in gets.items()]
        for what, keys in puts.items():
            transfers.append(floor.put(what, floor.fetch(keys)))
            for path in Path(tmp).iterdir():
                path.unlink()
    return {
        "seconds": sum(t.seconds for t in transfers),
        "rows": sum(s.rows for s in shards),
        "bytes": sum(t.bytes for t in transfers),
        "transfers": [asdict(t) for t in transfers],
        "calibration_s": floor.calibration,
    }


def stage_prep_floor(args) -> dict[str, Any]:
    layout = PipelineLayout.for_uri(pipeline_spec(args.rows).output_uri)
    keys = [s.key for s in load_shards(args.work_dir, args.rows)]
    return run_floor(
        args,
        {"GET source": [source_key(args.rows)]},
        {
            "PUT canonical parts": [layout.shard_rows(k).key for k in keys],
            "PUT JSONL inputs": [layout.shard_input(k).key for k in keys],
        },
    )


def stage_merge_floor(args) -> dict[str, Any]:
    spec = pipeline_spec(args.rows)
    layout = PipelineLayout.for_uri(spec.output_uri)
    shards = load_shards(args.work_dir, args.rows)
    return run_floor(
        args,
        {
            "GET .jsonl.out": [s.job_dir(spec).join("input.jsonl.out").key for s in shards],
            "GET canonical parts": [layout.shard_rows(s.key).key for s in shards],
        },
        {
            "PUT outputs Parquet": [layout.outputs(s.key).key for s in shards],
            "PUT merged Parquet": [layout.merged(s.key).key for s in shards],
        },
    )


# ---- end to end -------------------------------------------------------------------------------


def run_breakdown(instance) -> dict[str, Any]:
    """Step and run time from the instance's event log: steps STEP_START -> STEP_SUCCESS/FAILURE, runs
    from their first event to their last; step seconds per stage (the run's stage tag)."""
    from bedrock_assets.keys import STAGES, TAG_STAGE

    run_s = 0.0
    per_stage = dict.fromkeys(STAGES, 0.0)
    for run in instance.get_runs():
        stamps = [e.timestamp for e in instance.all_logs(run.run_id)]
        run_s += max(stamps) - min(stamps)
        stage = run.tags.get(TAG_STAGE, "other")
        per_stage[stage] = per_stage.get(stage, 0.0) + sum(
            s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id) if s.start_time and s.end_time
        )
    return {"step_s": sum(per_stage.values()), "run_s": run_s, "step_s_by_stage": per_stage}


def stage_e2e(args) -> dict[str, Any]:
    import dagster as dg

    from bedrock_assets.components.bedrock_batch_pipeline import build_pipeline_defs
    from bedrock_assets.runner import run_pipelines

    spec = pipeline_spec(args.rows, prefix="e2e", name="bench_e2e")
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=bedrock_resources()))
    instance = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    (summary,) = run_pipelines(
        defs, [spec], instance, poll_seconds=args.poll_seconds, timeout_seconds=args.timeout, log=log
    )
    seconds = time.perf_counter() - t0
    calls = summary.bedrock_calls.calls
    return {
        "seconds": seconds,
        **run_breakdown(instance),
        "rows": summary.rows,
        "bytes": parquet_path(args.work_dir, args.rows).stat().st_size,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "errors": summary.errors,
        "shards": summary.shards,
        "jobs": calls.get("CreateModelInvocationJob", 0),  # every batch job, retry rounds' too
        "job_statuses": summary.job_statuses,
        "runs": summary.runs_launched,
        "sensor_ticks": summary.sensor_ticks,
        "bedrock_calls": {op: n for op, n in calls.items() if op not in RUNTIME_OPS},
        "runtime_calls": {op: n for op, n in calls.items() if op in RUNTIME_OPS},
        "retry_rounds": summary.retry_rounds,
        "retried": summary.retried,
        "resent_in_batch_jobs": summary.resent_in_batch_jobs,
        "resent_on_demand": summary.resent_on_demand,
    }


STAGES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "gen": stage_gen,
    "mkout": stage_mkout,
    "prep": stage_prep,
    "prep_limit": stage_prep_limit,
    "prep_floor": stage_prep_floor,
    "merge": stage_merge,
    "merge_limit": stage_merge_limit,
    "merge_floor": stage_merge_floor,
    "e2e": stage_e2e,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.stages", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("stage", choices=sorted(STAGES))
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--work-dir", type=Path, default=Path("bench/results"))
    ap.add_argument("--keep-data", action="store_true", help="keep what the limit stages write under WORK_DIR/out")
    ap.add_argument("--poll-seconds", type=float, default=1.0, help="e2e: seconds between sensor ticks")
    ap.add_argument("--timeout", type=float, default=4 * 3600.0, help="e2e: give up after this many seconds")
    args = ap.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    # the process's S3 client is made before, as imports are (~0.27 s of CPU, boto3 reading its service
    # models): the AWS sample's handler modules make theirs at import, which bench.aws_sample leaves out too
    bedrock_resources()["s3"].get_client()
    cpu0 = time.process_time()
    result = STAGES[args.stage](args)
    # this process's CPU in the stage, every thread (modules and the S3 client made before): the client's CPU,
    # beside "local stack CPU" (the server side)
    result["client_cpu_s"] = time.process_time() - cpu0
    result.update(maxrss_kb=peak_rss_kb(), pid=os.getpid())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
