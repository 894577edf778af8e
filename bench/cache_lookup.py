"""The record cache's own cost at scale: keys, the index, a shard's lookup, and the memory they take.

    python -m bench.cache_lookup [--records 2200000] [--shard 50000] [--line-bytes 700]

Synthetic request lines of ``--line-bytes`` (a Claude body around a text), ``--records`` of them in
segments of ``--shard`` (as a pipeline of that many 50k-record jobs leaves behind): the time to compute
the keys of every record (what cutting the shards adds per record), to build the index from every
segment's keys (once per cut), and to look up one shard's keys (per shard), with the process's peak RSS.
The segments' reads from S3 are not included (one GET of 16 bytes a record per segment, in parallel).
"""

from __future__ import annotations

import argparse
import time

import pyarrow as pa

from bedrock_assets.record_cache import CacheIndex, cache_keys
from bench.report import peak_rss_kb


def lines(start: int, count: int, line_bytes: int) -> pa.Array:
    pad = "x" * max(line_bytes - 120, 1)
    return pa.array(
        [
            f'{{"recordId":"r{i:011d}","modelInput":{{"anthropic_version":"bedrock-2023-05-31","max_tokens":512,'
            f'"messages":[{{"role":"user","content":"{pad} {i}"}}]}}}}'
            for i in range(start, start + count)
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2_200_000)
    parser.add_argument("--shard", type=int, default=50_000)
    parser.add_argument("--line-bytes", type=int, default=700)
    args = parser.parse_args(argv)
    names, segments = [], []
    keying = 0.0
    for n, start in enumerate(range(0, args.records, args.shard)):
        batch = lines(start, min(args.shard, args.records - start), args.line_bytes)
        t = time.perf_counter()
        segments.append(cache_keys(batch, "anthropic.claude-3-5-haiku-20241022-v1:0", "InvokeModel"))
        keying += time.perf_counter() - t
        names.append(f"s{n:05d}-a1-0123456789")
    t = time.perf_counter()
    index = CacheIndex.of(names, segments)
    built = time.perf_counter() - t
    probe = pa.concat_arrays([segments[len(segments) // 2].slice(0, args.shard // 2), segments[0].slice(0, 0)])
    fresh = cache_keys(lines(args.records, args.shard - len(probe), args.line_bytes), "m", "InvokeModel")
    shard = pa.concat_arrays([probe, fresh])  # half answered before, half new
    t = time.perf_counter()
    found = index.lookup(shard)
    looked = time.perf_counter() - t
    hits = sum(f is not None for f in found)
    rss = peak_rss_kb() / 1024
    print(f"records {args.records:,} in {len(segments)} segments of {args.shard:,}; lines of ~{args.line_bytes} bytes")
    print(f"keys: {keying:.2f} s for every record ({keying / args.records * 1e6:.2f} us a record)")
    print(
        f"index of {index.size:,} keys: built in {built:.2f} s, {(index.hi.nbytes + index.lo.nbytes + index.segment.nbytes) / 2**20:.0f} MiB"
    )
    print(f"lookup of one shard ({len(shard):,} keys, {hits:,} found): {looked * 1000:.0f} ms")
    print(f"peak RSS {rss:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
