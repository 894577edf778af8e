"""One benchmark stage per process: ``python -m bench.stages STAGE --rows N --work-dir DIR``.

Each stage prints exactly one JSON line on stdout (the last line): ``seconds`` of the measured work,
``rows``, ``bytes`` and ``maxrss_kb`` (``ru_maxrss`` of this process, i.e. its peak RSS), plus
stage-specific details. Progress goes to stderr. Stages that talk to S3 use plain boto3 and take
the endpoint from the environment (the parent points it at a local stack running in another
process, so the stack's memory and CPU are not part of these numbers).

Stages (``ours`` = the package's real code path, ``base`` = the bare-pyarrow/json minimum):

- ``gen``: write the SimpleCoT-like Parquet for N rows (cached under DIR/data).
- ``prep``: ours. ``prepare_dataset`` + ``write_shard_input`` for every shard, to s3://bench/prep-N.
- ``prep_base``: base. ``ParquetFile.iter_batches`` + ``json.dumps`` of the same Claude request lines
  to a local file.
- ``mkout``: (setup, not measured) fetch the canonical shard parts of ``prep`` and create Bedrock-style
  ``.jsonl.out`` files for them (cached: regenerated only when the shard digests change).
- ``mkemb``: (setup) the same for a Titan Text Embeddings V2 pipeline over the first N rows.
- ``merge --kind text|emb``: ours. ``OutputParser.parse_chunk`` over 8 MB line blocks, ``merge_shard``
  with the shard's input rows, ``pq.write_table``; one shard at a time.
- ``merge_base --kind text|emb``: base. ``pyarrow.json.read_json`` + ``pq.write_table`` per file.
- ``e2e``: the whole text pipeline through Dagster (``runner.run_pipelines``) on the local stack.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatchInference"
TEMPLATE = "Task category: {task}\n\n{source}"
SYSTEM = "You are a careful assistant. Reason step by step, then state the final answer."
MAX_TOKENS = 512
SHARD_RECORDS = 50_000
BUCKET = "bench"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
ERROR_RATE = 0.01
BLOCK_BYTES = 8 << 20  # storage.iter_line_chunks' chunk size
BATCH_ROWS = 16_384  # prepare.BATCH_ROWS
FAKE_JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/bench{shard}"


def log(msg: str) -> None:
    print(f"[bench.stages] {msg}", file=sys.stderr, flush=True)


# ---- shared layout and specs -------------------------------------------------------------------


def data_dir(work: Path) -> Path:
    return work / "data"


def parquet_path(work: Path, rows: int) -> Path:
    return data_dir(work) / f"simplecot-{rows}.parquet"


def merge_dir(work: Path, kind: str, rows: int) -> Path:
    return data_dir(work) / f"merge-{kind}-{rows}"


def out_dir(work: Path, name: str) -> Path:
    path = work / "out" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def text_spec(source: Path, output_uri: str, name: str = "bench_text"):
    from bedrock_assets.spec import parse_pipeline

    return parse_pipeline(
        {
            "name": name,
            "source": {"uri": str(source), "format": "parquet"},
            "model": {"id": CLAUDE},
            "prompt": {"template": TEMPLATE, "system": SYSTEM},
            "inference": {"max_tokens": MAX_TOKENS},
            "output_uri": output_uri,
            "shards": {"max_records": SHARD_RECORDS},
            "role_arn": ROLE,
        }
    )


def emb_spec(source: Path, output_uri: str, name: str = "bench_emb"):
    from bedrock_assets.spec import parse_pipeline

    return parse_pipeline(
        {
            "name": name,
            "source": {"uri": str(source), "format": "parquet"},
            "model": {"id": TITAN},
            "prompt": {"input_column": "source"},
            "inference": {"dimensions": 1024},
            "output_uri": output_uri,
            "shards": {"max_records": SHARD_RECORDS},
            "role_arn": ROLE,
        }
    )


def prep_uri(rows: int) -> str:
    return f"s3://{BUCKET}/prep-{rows}"


def emb_uri(rows: int) -> str:
    return f"s3://{BUCKET}/emb-{rows}"


def s3_client():
    import boto3

    return boto3.client("s3")


def maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def iter_file_chunks(path: Path, chunk_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """storage.iter_line_chunks over a local file: 8 MB reads cut at the last complete line."""
    from bedrock_assets.storage import line_chunks

    with open(path, "rb") as f:
        yield from line_chunks(f.read, chunk_bytes)


# ---- stages ------------------------------------------------------------------------------------


def stage_gen(args) -> dict[str, Any]:
    from bedrock_assets.sample.simplecot import write_simplecot

    path = parquet_path(args.work_dir, args.rows)
    t0 = time.perf_counter()
    cached = path.exists()
    if not cached:
        tmp = path.with_name(path.name + ".tmp")
        write_simplecot(tmp, args.rows, seed=0)
        tmp.rename(path)
    return {
        "seconds": time.perf_counter() - t0,
        "rows": args.rows,
        "bytes": path.stat().st_size,
        "cached": cached,
        "path": str(path),
    }


def stage_prep(args) -> dict[str, Any]:
    from bedrock_assets.graph.jsonl_shards import write_shard_input
    from bedrock_assets.graph.raw_dataset import prepare_dataset

    source = parquet_path(args.work_dir, args.rows)
    spec = text_spec(source, prep_uri(args.rows))
    s3 = s3_client()
    t0 = time.perf_counter()
    ds = prepare_dataset(spec, s3)
    t1 = time.perf_counter()
    written = [write_shard_input(spec, s3, info) for info in ds.shards]
    t2 = time.perf_counter()
    jsonl = sum(info.bytes for info in ds.shards)
    if jsonl != sum(w.bytes for w in written):
        raise RuntimeError("JSONL bytes written differ from the shard plan")
    id_chars = _first_record_id_chars(s3, written[0].uri) if written else 16
    return {
        "record_id_chars": id_chars,
        "seconds": t2 - t0,
        "prepare_dataset_s": t1 - t0,
        "write_shard_inputs_s": t2 - t1,
        "rows": ds.rows,
        "records": sum(info.records for info in ds.shards),
        "rejected": ds.rejected,
        "bytes": jsonl,
        "input_bytes": source.stat().st_size,
        "shards": len(ds.shards),
    }


def _first_record_id_chars(s3, uri: str) -> int:
    """Length of the first recordId of a JSONL input (the baseline writes ids of the same length)."""
    from bedrock_assets.uris import parse_s3_uri

    loc = parse_s3_uri(uri)
    head = s3.get_object(Bucket=loc.bucket, Key=loc.key, Range="bytes=0-1023")["Body"].read()
    return len(json.loads(head.split(b",", 1)[0] + b"}")["recordId"])


def stage_prep_base(args) -> dict[str, Any]:
    source = parquet_path(args.work_dir, args.rows)
    target = out_dir(args.work_dir, "prep_base") / f"{args.rows}.jsonl"
    dumps = json.dumps
    template = TEMPLATE.format
    width = max(1, args.id_chars - 1)
    rows = 0
    t0 = time.perf_counter()
    with open(target, "wb") as out:
        # pre_buffer=False: the default (True) keeps every column chunk read so far in memory until the
        # file is closed, so RSS grows with the file (measured: 683 MB vs 226 MB at 2.2M rows, and slower)
        pf = pq.ParquetFile(source, pre_buffer=False)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=["task", "source"]):
            lines = []
            for task, text in zip(batch.column("task").to_pylist(), batch.column("source").to_pylist()):
                body = {
                    "anthropic_version": ANTHROPIC_VERSION,
                    "max_tokens": MAX_TOKENS,
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": template(task=task, source=text)}]}
                    ],
                    "system": SYSTEM,
                }
                lines.append(
                    dumps(
                        {"recordId": f"r{rows:0{width}d}", "modelInput": body},
                        ensure_ascii=False,
                        separators=(",", ":"),
                    )
                )
                rows += 1
            lines.append("")
            out.write("\n".join(lines).encode())
    seconds = time.perf_counter() - t0
    size = target.stat().st_size
    if not args.keep_data:
        target.unlink()
    return {"seconds": seconds, "rows": rows, "bytes": size, "input_bytes": source.stat().st_size}


def _fetch_canonical(spec, s3, cache: Path) -> tuple[list, list[str]]:
    """Download the canonical shard parts (always: their layout is the current code's)."""
    from bedrock_assets.graph.raw_dataset import load_shard_plan
    from bedrock_assets.layout import PipelineLayout
    from bedrock_assets.storage import download_file

    index = load_shard_plan(spec, s3)
    layout = PipelineLayout.for_uri(spec.output_uri)
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob("*.rows.parquet"):
        stale.unlink()
    for info in index.shards:
        download_file(s3, layout.shard_rows(info.key), cache / f"{info.key}.rows.parquet")
    return index.shards, [info.digest for info in index.shards]


def _cache_valid(cache: Path, digests: list[str], keys: list[str]) -> bool:
    marker = cache / "outputs.json"
    if not marker.exists():
        return False
    try:
        meta = json.loads(marker.read_text())
    except ValueError:
        return False
    return meta.get("digests") == digests and all((cache / f"{k}.jsonl.out").exists() for k in keys)


def _write_outputs(
    spec,
    s3,
    cache: Path,
    shards: list,
    digests: list[str],
    kind: str,
    answer: Callable[[list[bytes], list[Any], np.random.Generator], list[bytes]],
) -> dict[str, Any]:
    """Bedrock-style .jsonl.out per shard from its JSONL input (shuffled, ~1% error lines)."""
    from bedrock_assets.layout import PipelineLayout
    from bedrock_assets.storage import download_file

    layout = PipelineLayout.for_uri(spec.output_uri)
    (cache / "outputs.json").unlink(missing_ok=True)
    lines_total = errors_total = 0
    for n, info in enumerate(shards):
        jsonl = download_file(s3, layout.shard_input(info.key), cache / "input.jsonl.tmp")
        requests = [line for line in jsonl.read_bytes().split(b"\n") if line.strip()]
        jsonl.unlink()
        rng = np.random.default_rng(1000 + n)
        order = rng.permutation(len(requests))
        target = cache / f"{info.key}.jsonl.out"
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as out:
            for start in range(0, len(order), 2048):
                raw = [requests[i] for i in order[start : start + 2048]]
                bodies = [json.loads(r)["modelInput"] for r in raw]
                failed = rng.random(len(raw)) < ERROR_RATE
                ok = [i for i in range(len(raw)) if not failed[i]]
                outputs = dict(zip(ok, answer([raw[i] for i in ok], [bodies[i] for i in ok], rng)))
                chunk = []
                for i, line in enumerate(raw):
                    head = line[:-1]  # '{"recordId":..,"modelInput":{..}' without the closing brace
                    if failed[i]:
                        chunk.append(
                            head + b',"error":{"errorCode":400,"errorMessage":"Malformed input request: '
                            b'[bench] synthetic model error, please reformat your input and try again."}}'
                        )
                    else:
                        chunk.append(head + b',"modelOutput":' + outputs[i] + b"}")
                    errors_total += bool(failed[i])
                chunk.append(b"")
                out.write(b"\n".join(chunk))
                lines_total += len(raw)
        tmp.rename(target)
        log(f"{kind}: wrote {target.name} ({target.stat().st_size / 1e6:.1f} MB)")
    (cache / "outputs.json").write_text(json.dumps({"digests": digests, "lines": lines_total, "errors": errors_total}))
    return {"lines": lines_total, "errors": errors_total}


def _claude_answers(raw: list[bytes], bodies: list[Any], rng) -> list[bytes]:
    from bedrock_assets.local_stack.synthetic import synthesize_batch

    return [r.output_json.encode() for r in synthesize_batch(CLAUDE, "InvokeModel", bodies)]


def _titan_answers(raw: list[bytes], bodies: list[Any], rng) -> list[bytes]:
    from bedrock_assets.local_stack.synthetic import format_vectors, round_significant

    if not bodies:
        return []
    matrix = rng.standard_normal((len(bodies), 1024))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    vectors = format_vectors(round_significant(matrix))
    return [
        f'{{"embedding":{v},"inputTextTokenCount":{max(1, (len(b["inputText"]) + 3) // 4)}}}'.encode()
        for v, b in zip(vectors, bodies)
    ]


def _setup_outputs(args, kind: str, spec, answer) -> dict[str, Any]:
    s3 = s3_client()
    cache = merge_dir(args.work_dir, kind, args.rows)
    t0 = time.perf_counter()
    shards, digests = _fetch_canonical(spec, s3, cache)
    keys = [s.key for s in shards]
    cached = _cache_valid(cache, digests, keys)
    for stale in cache.glob("*.jsonl.out"):
        if stale.name.removesuffix(".jsonl.out") not in keys:
            stale.unlink()
    info = (
        json.loads((cache / "outputs.json").read_text())
        if cached
        else _write_outputs(spec, s3, cache, shards, digests, kind, answer)
    )
    out_bytes = sum((cache / f"{k}.jsonl.out").stat().st_size for k in keys)
    (cache / "shards.json").write_text(json.dumps(keys))
    return {
        "seconds": time.perf_counter() - t0,
        "rows": sum(s.rows for s in shards),
        "bytes": out_bytes,
        "cached": cached,
        "shards": len(keys),
        "lines": info["lines"],
        "errors": info["errors"],
    }


def stage_mkout(args) -> dict[str, Any]:
    spec = text_spec(parquet_path(args.work_dir, args.rows), prep_uri(args.rows))
    return _setup_outputs(args, "text", spec, _claude_answers)


def stage_mkemb(args) -> dict[str, Any]:
    from bedrock_assets.graph.jsonl_shards import write_shard_input
    from bedrock_assets.graph.raw_dataset import prepare_dataset

    spec = emb_spec(parquet_path(args.work_dir, args.rows), emb_uri(args.rows))
    s3 = s3_client()
    t0 = time.perf_counter()
    for info in prepare_dataset(spec, s3).shards:
        write_shard_input(spec, s3, info)
    log(f"embedding prepare_dataset for {args.rows} rows: {time.perf_counter() - t0:.1f} s")
    return _setup_outputs(args, "emb", spec, _titan_answers)


def _adapter(kind: str, work: Path):
    spec = (text_spec if kind == "text" else emb_spec)(work / "unused.parquet", "s3://bench/unused")
    return spec.adapter()


def _merge_inputs(args) -> tuple[Path, list[str]]:
    cache = merge_dir(args.work_dir, args.kind, args.rows)
    return cache, json.loads((cache / "shards.json").read_text())


def stage_merge(args) -> dict[str, Any]:
    from bedrock_assets.bedrock.job_status import JobStatus
    from bedrock_assets.graph.batch_job_outputs import OutputParser
    from bedrock_assets.graph.merged_results import merge_shard
    from bedrock_assets.ledger import JobAttempt
    from bedrock_assets.records import INPUT_ERROR, RECORD_ID

    adapter = _adapter(args.kind, args.work_dir)
    cache, keys = _merge_inputs(args)
    target_dir = out_dir(args.work_dir, f"merge-{args.kind}-{args.rows}")
    parts = {"read_rows_s": 0.0, "parse_s": 0.0, "merge_s": 0.0, "write_s": 0.0}
    rows = lines = ok = errored = 0
    size = 0
    t0 = time.perf_counter()
    for key in keys:
        ta = time.perf_counter()
        table = pq.read_table(cache / f"{key}.rows.parquet")
        sent = table.filter(pc.is_null(table.column(INPUT_ERROR))).column(RECORD_ID).to_pylist()
        tb = time.perf_counter()
        parser = OutputParser(adapter, expected_ids=sent)
        out_path = cache / f"{key}.jsonl.out"
        size += out_path.stat().st_size
        batches = [parser.parse_chunk(chunk, where=str(out_path)) for chunk in iter_file_chunks(out_path)]
        outputs = pa.Table.from_batches(batches, schema=parser.schema)
        del batches, sent
        tc = time.perf_counter()
        merged = merge_shard(
            table,
            outputs,
            JobAttempt(
                pipeline="bench",
                shard=key,
                attempt=1,
                job_name=key,
                input_digest="",
                model_id="",
                records=table.num_rows,
                input_uri="",
                output_uri="",
                status=JobStatus.COMPLETED,
                job_arn=FAKE_JOB_ARN.format(shard=key),
            ),
        )
        td = time.perf_counter()
        pq.write_table(merged, target_dir / f"{key}.parquet")
        te = time.perf_counter()
        parts["read_rows_s"] += tb - ta
        parts["parse_s"] += tc - tb
        parts["merge_s"] += td - tc
        parts["write_s"] += te - td
        rows += merged.num_rows
        lines += parser.stats.lines
        ok += parser.stats.succeeded
        errored += parser.stats.errored
        del table, outputs, merged, parser
    seconds = time.perf_counter() - t0
    if not args.keep_data:
        shutil.rmtree(target_dir)
    return {
        "seconds": seconds,
        **parts,
        "rows": rows,
        "bytes": size,
        "lines": lines,
        "succeeded": ok,
        "errored": errored,
        "shards": len(keys),
    }


def stage_merge_base(args) -> dict[str, Any]:
    import pyarrow.json as pajson

    cache, keys = _merge_inputs(args)
    target_dir = out_dir(args.work_dir, f"merge_base-{args.kind}-{args.rows}")
    rows = size = 0
    read_s = write_s = 0.0
    t0 = time.perf_counter()
    for key in keys:
        path = cache / f"{key}.jsonl.out"
        size += path.stat().st_size
        ta = time.perf_counter()
        table = pajson.read_json(path)
        tb = time.perf_counter()
        pq.write_table(table, target_dir / f"{key}.parquet")
        write_s += time.perf_counter() - tb
        read_s += tb - ta
        rows += table.num_rows
        del table
    seconds = time.perf_counter() - t0
    if not args.keep_data:
        shutil.rmtree(target_dir)
    return {
        "seconds": seconds,
        "read_json_s": read_s,
        "write_s": write_s,
        "rows": rows,
        "bytes": size,
        "shards": len(keys),
    }


def stage_e2e(args) -> dict[str, Any]:
    import dagster as dg

    from bedrock_assets.components.bedrock_batch_pipeline import build_pipeline_defs
    from bedrock_assets.resources import bedrock_resources
    from bedrock_assets.runner import run_pipelines

    source = parquet_path(args.work_dir, args.rows)
    spec = text_spec(source, f"s3://{BUCKET}/e2e-{args.rows}", name="bench_e2e")
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=bedrock_resources()))
    instance = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    (summary,) = run_pipelines(
        defs, [spec], instance, poll_seconds=args.poll_seconds, timeout_seconds=args.timeout, log=log
    )
    seconds = time.perf_counter() - t0
    calls = sum(summary.bedrock_calls.calls.values())
    return {
        "seconds": seconds,
        "rows": summary.rows,
        "bytes": source.stat().st_size,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "errors": summary.errors,
        "shards": summary.shards,
        "job_statuses": summary.job_statuses,
        "runs_launched": summary.runs_launched,
        "sensor_ticks": summary.sensor_ticks,
        "bedrock_calls": summary.bedrock_calls.calls,
        "bedrock_calls_total": calls,
        "bedrock_calls_per_job": calls / summary.shards if summary.shards else None,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "merged_uri": summary.merged_uri,
    }


STAGES = {
    "gen": stage_gen,
    "prep": stage_prep,
    "prep_base": stage_prep_base,
    "mkout": stage_mkout,
    "mkemb": stage_mkemb,
    "merge": stage_merge,
    "merge_base": stage_merge_base,
    "e2e": stage_e2e,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.stages", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("stage", choices=sorted(STAGES))
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--work-dir", type=Path, default=Path("bench/results"))
    ap.add_argument("--kind", choices=("text", "emb"), default="text", help="merge stages: which outputs")
    ap.add_argument("--keep-data", action="store_true", help="keep what the stage writes under WORK_DIR/out")
    ap.add_argument("--id-chars", type=int, default=16, help="prep_base: recordId length (match ours)")
    ap.add_argument("--poll-seconds", type=float, default=1.0, help="e2e: seconds between sensor ticks")
    ap.add_argument("--timeout", type=float, default=4 * 3600.0, help="e2e: give up after this many seconds")
    args = ap.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    import pyarrow.dataset  # noqa: F401  (lazy imports of pq.read_table / read_json stay out of the timings)
    import pyarrow.json  # noqa: F401

    data_dir(args.work_dir).mkdir(parents=True, exist_ok=True)
    result = STAGES[args.stage](args)
    result.update(stage=args.stage, kind=args.kind, maxrss_kb=maxrss_kb(), pid=os.getpid())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
