"""Micro-benchmark of request rendering (``records.request_lines``) with a realistic fixed prompt.

    python -m bench.request_lines [--rows 220000] [--work-dir bench/results]

Renders every row of a SimpleCoT-like dataset into Claude request lines with a ~960-character fixed
template (the case the speed issue profiled: the fixed text was escaped once per row), best of three.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow.parquet as pq

from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.records import derived_record_ids, request_lines
from bedrock_assets.sample.simplecot import write_simplecot

FIXED_TEXT = "You are grading chain-of-thought answers. " * 23  # ~960 characters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=220_000)
    parser.add_argument("--work-dir", default="bench/results")
    args = parser.parse_args(argv)
    data = Path(args.work_dir) / "data" / f"simplecot-{args.rows}.parquet"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        write_simplecot(data, args.rows)
    table = pq.read_table(data)
    adapter = adapter_for(
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "InvokeModel",
        PromptSettings(template=FIXED_TEXT + "\nTask: {task}\n\n{source}", system="Answer briefly."),
        InferenceSettings(),
    )
    ids = derived_record_ids(0, table.num_rows)
    timings = []
    for _ in range(3):
        started, offset = time.perf_counter(), 0
        for batch in table.to_batches(max_chunksize=16_384):
            request_lines(batch, ids.slice(offset, batch.num_rows), adapter)
            offset += batch.num_rows
        timings.append(time.perf_counter() - started)
    print(
        f"request_lines, {table.num_rows:,} rows, {len(FIXED_TEXT)}-character fixed prompt: best of 3 {min(timings):.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
