"""The record cache on the local stack: one edited row costs one record, a moved shard boundary costs nothing,
a changed prompt re-sends everything, and a failed record is never re-used."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bedrock_assets.components.bedrock_batch_pipeline import BedrockBatchPipeline
from bedrock_assets.record_cache import KEY_TYPE, CacheIndex, RecordCache, Segment, cache_keys
from bedrock_assets.records import ANSWERED_BY, CACHE_KEY, RECORD_ID
from bedrock_assets.shards import LINES_DIGEST, load_shard_index
from bedrock_assets_tests.helpers import (
    NO_RECOURSE,
    ledger_of,
    pipeline_defs,
    pipeline_dict,
    priced_attempt,
    read_parquet,
    run,
    step_of,
)

ROWS = 3000
EDITED = 1500  # a row of the middle shard (s00001: rows 1000-1999)


def cached_pipeline(bucket: str, name: str = "kept", **overrides: Any) -> dict[str, Any]:
    """(Each test its own name: job names are unique in the account, and the local stack's is shared.)"""
    return pipeline_dict(name, bucket, **{"shards": {"max_records": 1000}, **overrides})


def edit_row(s3: Any, bucket: str, tmp_path: Path, row: int) -> None:
    local = tmp_path / "edited.parquet"
    s3.download_file(bucket, "raw/sample.parquet", str(local))
    table = pq.read_table(local)
    sources = table.column("source").to_pylist()
    sources[row] = sources[row] + " (edited)"
    pq.write_table(table.set_column(table.schema.get_field_index("source"), "source", pa.array(sources)), local)
    s3.upload_file(str(local), bucket, "raw/sample.parquet")


def same_ledger(defs: Any, attributes: dict[str, Any], tmp_path: Path) -> tuple[Any, Any]:
    """Definitions of a changed spec of the same pipeline, with the same ledger."""
    spec = BedrockBatchPipeline.from_attributes(attributes, tmp_path)
    return pipeline_defs([spec], defs.resources["bedrock_ledger"].table_name), spec


def calls(stack: Any) -> tuple[int, int]:
    return stack.emulator.job_count(), stack.emulator.runtime_calls()["InvokeModel"]


def test_one_edited_row_costs_one_record_and_an_unchanged_rerun_nothing(
    make_pipelines, instance, stack, s3, bucket, tmp_path
):
    defs, (spec,) = make_pipelines([cached_pipeline(bucket)], rows=ROWS)
    first = run(defs, spec, instance)
    assert (first.shards, first.succeeded) == (3, ROWS)
    edit_row(s3, bucket, tmp_path, EDITED)
    before = calls(stack)
    second = run(defs, spec, instance)
    jobs, invoked = calls(stack)
    assert (jobs - before[0], invoked - before[1]) == (0, 1)  # no new job: the edited record on demand, once
    merged = read_parquet(s3, second.merged_uri, tmp_path)
    assert merged.num_rows == pc.count_distinct(merged.column("record_id")).as_py() == ROWS
    assert merged.column("error_code").null_count == ROWS
    answered = merged.column("cached_from")
    assert len(answered) - answered.null_count == 999  # the edited shard's other rows: from the cache
    edited = merged.slice(EDITED, 1).to_pylist()[0]
    assert edited["cached_from"] is None and edited["job_arn"].startswith("on-demand/")
    assert edited["output_text"].startswith("[emulated]")
    # each shard's staged lines are what it sends, by sha256: the edited shard only its edited record (the cache
    # answers the rest), the unchanged ones what they were planned with (so they keep their jobs)
    step = step_of(spec)
    for info in load_shard_index(step).shards:
        staged = s3.get_object(Bucket=bucket, Key=step.layout.shard_lines(info.key).key)
        body = staged["Body"].read()
        assert staged["Metadata"][LINES_DIGEST] == hashlib.sha256(body).hexdigest() == info.digest
        assert body.count(b"\n") == info.records == (1 if info.key == "s00001" else 1000)
    neighbour = merged.slice(EDITED + 1, 1).to_pylist()[0]
    s00001 = ledger_of(defs).attempts("kept", "s00001")[0]
    assert neighbour["cached_from"] == neighbour["job_arn"] == s00001.job_arn  # lineage: the job that answered
    assert second.report is not None and {r["lane"]: int(r["records"]) for r in second.report.cost_by_lane} == {
        "batch": ROWS,
        "on demand (default)": 1,
        "record cache (paid before)": 999,
    }
    third_before = calls(stack)
    third = run(defs, spec, instance)  # nothing changed since: nothing sent, no shard re-planned
    assert calls(stack) == third_before and third.succeeded == ROWS


def test_a_moved_shard_boundary_costs_nothing(make_pipelines, instance, stack, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([cached_pipeline(bucket, "moved")], rows=ROWS)
    run(defs, spec, instance)
    wider, spec2 = same_ledger(defs, cached_pipeline(bucket, "moved", shards={"max_records": 1500}), tmp_path)
    before = calls(stack)
    summary = run(wider, spec2, instance)
    assert calls(stack) == before and summary.shards == 2  # no job, no call: every record from the cache
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert merged.column("cached_from").null_count == 0 and merged.column("error_code").null_count == ROWS


def test_a_changed_prompt_sends_every_record_again(make_pipelines, instance, stack, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([cached_pipeline(bucket, "reworded")], rows=ROWS)
    run(defs, spec, instance)
    reworded = cached_pipeline(
        bucket, "reworded", prompt={"template": "Answer: {task}\n\n{source}", "system": "Be brief."}
    )
    defs2, spec2 = same_ledger(defs, reworded, tmp_path)
    before = calls(stack)
    summary = run(defs2, spec2, instance)
    assert calls(stack)[0] - before[0] == 3  # every body changed: three new jobs, nothing re-used
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert merged.column("cached_from").null_count == ROWS


def test_a_failed_record_is_never_cached_and_is_sent_again(make_pipelines, instance, stack, s3, bucket, tmp_path):
    stack.configure(record_error_rate=0.05)
    defs, (spec,) = make_pipelines(
        [cached_pipeline(bucket, "refused", retry=NO_RECOURSE, max_error_rate=0.2)], rows=ROWS
    )
    first = run(defs, spec, instance)
    failed = first.failed
    assert 0 < failed < ROWS
    index = RecordCache(step_of(spec, defs)).index()
    assert index.size == first.succeeded  # only the answers that succeeded are kept
    stack.configure(record_error_rate=0.0)
    wider, spec2 = same_ledger(defs, cached_pipeline(bucket, "refused", shards={"max_records": 1500}), tmp_path)
    summary = run(wider, spec2, instance)
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert merged.column("error_code").null_count == ROWS  # the failed ones were sent again, and succeeded
    assert merged.column("cached_from").null_count == failed


def test_the_index_finds_each_key_in_its_segment_and_nothing_else():
    requests = pa.array(
        [
            '{"recordId":"a","modelInput":{"x":1}}',
            None,  # rejected before submission: no key
            '{"recordId":"b","modelInput":{"x":2}}',
            '{"recordId":"c","modelInput":{"x":1}}',  # the same body as "a": the same answer
        ]
    )
    keys = cache_keys(requests, "m", "InvokeModel")
    assert keys[1].as_py() is None and keys[0] == keys[3] != keys[2]
    assert cache_keys(requests, "other-model", "InvokeModel")[0] != keys[0]  # another model: another question
    index = CacheIndex.of(["seg-a", "seg-b"], [keys.take([0]), keys.take([2])])
    assert index.lookup(keys) == ["seg-a", None, "seg-b", "seg-a"]
    rng = np.random.default_rng(0)
    many = pa.array([bytes(rng.integers(0, 256, 16, dtype=np.uint8)) for _ in range(1000)], pa.binary(16))
    big = CacheIndex.of(["s0", "s1"], [many.slice(0, 500), many.slice(500)])
    found = big.lookup(many)
    assert found[:500] == ["s0"] * 500 and found[500:] == ["s1"] * 500
    assert big.lookup(keys) == [None] * 4


def test_a_key_is_blake2b_of_model_invocation_and_the_model_input_bytes_in_any_arrow_layout():
    import hashlib

    lines = [
        '{"recordId":"a","modelInput":{"messages":[{"content":"héllo ✓"}]}}',
        None,
        '{"recordId":"b\\"modelInput\\":x","modelInput":{"q":1}}',  # the name inside an escaped id is not the body
        '{"no":"model input"}',
    ]

    def plain(line: str) -> bytes:
        raw = line.encode()
        at = raw.find(b'"modelInput":')
        body = raw[at + 13 : -1] if at >= 0 else raw
        return hashlib.blake2b(b"m\x1fInvokeModel\x1f" + body, digest_size=16).digest()

    expected = [plain(line) if line is not None else None for line in lines]
    assert (
        expected[0]
        == hashlib.blake2b(  # the key of segments already written: it must never change
            'm\x1fInvokeModel\x1f{"messages":[{"content":"héllo ✓"}]}'.encode(), digest_size=16
        ).digest()
    )
    whole = pa.array(["x", *lines], pa.string())
    for layout in (
        pa.array(lines, pa.string()),
        pa.array(lines, pa.large_string()),
        whole.slice(1),  # an offset into the buffers
        pa.chunked_array([whole.slice(1, 2), whole.slice(3)]),
    ):
        assert cache_keys(layout, "m", "InvokeModel").to_pylist() == expected


def test_a_segment_gathered_batch_by_batch_keeps_each_keyed_success_once():
    """What merge keeps while it parses (no read-back of the outputs file): the successful rows, keyed from the
    shard's rows, answered by the attempt; an error, an id the shard does not hold and a null key are not kept,
    and the result equals the segment of the same rows taken as one table."""
    keys = [bytes([i]) * 16 for i in range(4)]
    rows = pa.table({RECORD_ID: ["r0", "r1", "r2", "r3"], CACHE_KEY: pa.array([*keys[:3], None], KEY_TYPE)})
    outputs = pa.table(
        {
            RECORD_ID: ["r2", "r1", "r0", "r3", "rX"],
            "output_text": ["c", "b", "a", "d", "x"],
            "error_code": [None, "ModelError", None, None, None],
        }
    )
    answered = priced_attempt("s00000", "arn:job/1", tokens=(1, 1))
    gathered = Segment(answered, rows)
    for batch in outputs.to_batches(max_chunksize=2):
        gathered.add(batch)
    kept = gathered.table()
    assert kept.select([RECORD_ID, "output_text", CACHE_KEY]).to_pylist() == [
        {RECORD_ID: "r2", "output_text": "c", CACHE_KEY: keys[2]},
        {RECORD_ID: "r0", "output_text": "a", CACHE_KEY: keys[0]},
    ]
    assert set(kept.column(ANSWERED_BY).to_pylist()) == {"arn:job/1"}
    whole = Segment(answered, rows)
    whole.add(outputs)
    assert whole.table().equals(kept)
    assert Segment(answered, rows).table().num_rows == 0  # nothing answered: nothing to store
