"""A source of many files: an S3 prefix of hundreds of small Parquet files read by raw_dataset's reader.

    python -m bench.source_files [--files 400] [--rows 500] [--latency-ms 30]

The local stack answers a GET in a few milliseconds; S3 answers a small object's first byte in tens of
milliseconds, so each GET here waits ``--latency-ms`` more (in the client, before the call). Reads every
row with ``sources.iter_batches`` one file at a time (``PREFETCH = 0``) and with the files ahead
downloading (the default), twice each, and checks both give the same rows in the same order.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from bedrock_assets import sources
from bedrock_assets.local_stack import LocalStack
from bedrock_assets.storage import S3Access
from bench.daemon_path import free_port


def seed(s3: Any, files: int, rows: int) -> None:
    s3.create_bucket(Bucket="many-files")
    for i in range(files):
        table = pa.table({"task": [f"t{i}"] * rows, "source": [f"row {j} of file {i}" for j in range(rows)]})
        body = io.BytesIO()
        pq.write_table(table, body)
        s3.put_object(Bucket="many-files", Key=f"src/part-{i:05d}.parquet", Body=body.getvalue())


def slowed(client: Any, latency: float) -> Any:
    get = client.get_object

    def get_object(**kwargs: Any) -> Any:
        time.sleep(latency)
        return get(**kwargs)

    client.get_object = get_object
    return client


def read_all(access: S3Access, ahead: int) -> tuple[float, list[str]]:
    """Seconds to read every row, and each batch's first value (the order)."""
    files = sources.resolve_files("s3://many-files/src/", None, access)
    t0 = time.perf_counter()
    seen = [sb.batch.column("source")[0].as_py() for sb in sources.iter_batches(files, access, ahead=ahead)]
    return time.perf_counter() - t0, seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.source_files", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    args = parser.parse_args(argv)
    stack = LocalStack(port=free_port(), time_scale=0)
    stack.start()
    os.environ.update(stack.env())
    try:
        seed(boto3.client("s3"), args.files, args.rows)
        access = S3Access(slowed(boto3.client("s3"), args.latency_ms / 1000))
        results: dict[int, list[tuple[float, list[str]]]] = {}
        for ahead in (0, sources.PREFETCH, 0, sources.PREFETCH):
            seconds, order = read_all(access, ahead)
            results.setdefault(ahead, []).append((seconds, order))
        (_, one), (_, other) = results[0][0], results[sources.PREFETCH][0]
        assert one == other, "the rows came in another order"
        rows = args.files * args.rows
        for ahead, runs in results.items():
            best = min(s for s, _ in runs)
            label = "one file at a time" if ahead == 0 else f"{ahead} files ahead"
            print(f"{args.files} files, {rows:,} rows, +{args.latency_ms:.0f} ms per GET, {label}: {best:.2f} s")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
