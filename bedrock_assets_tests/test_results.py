"""Output parsing and the left join: out of order, duplicated, missing and failed records."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.results import INVALID_INPUT, NOT_RETURNED, JobInfo, OutputParser, merge_shard


def claude():
    return adapter_for("anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel", PromptSettings(template="{q}"),
                       InferenceSettings())


def ok_line(rid: str, text: str) -> bytes:
    return json.dumps({"recordId": rid, "modelInput": {}, "modelOutput": {
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2}}}).encode()


def err_line(rid: str) -> bytes:
    return json.dumps({"recordId": rid, "modelInput": {},
                       "error": {"errorCode": 400, "errorMessage": "Malformed input request"}}).encode()


def input_rows(n: int, rejected: set[int] = frozenset()) -> pa.Table:
    return pa.table({
        "q": [f"question {i}" for i in range(n)],
        "record_id": [f"id{i}" for i in range(n)],
        "source_file": [f"f.parquet"] * n,
        "source_row": list(range(n)),
        "_request": [None if i in rejected else "{}" for i in range(n)],
        "_input_error": ["ValueError: empty" if i in rejected else None for i in range(n)],
    })


def parse(lines, expected):
    parser = OutputParser(claude(), expected_ids=expected)
    table = pa.Table.from_batches([parser.parse_chunk(b"\n".join(lines[:2])), parser.parse_chunk(b"\n".join(lines[2:]))])
    return parser, table


def test_merge_of_out_of_order_duplicated_and_missing_lines():
    rows = input_rows(6, rejected={5})
    lines = [ok_line("id3", "three"), err_line("id1"), ok_line("id0", "zero"), ok_line("id3", "dup"),
             ok_line("stranger", "x")]  # id2, id4 never returned; id5 rejected before submission
    parser, outputs = parse(lines, ["id0", "id1", "id2", "id3", "id4"])
    assert (parser.stats.duplicates, parser.stats.unknown_ids, parser.stats.succeeded, parser.stats.errored) == (1, 1, 2, 1)

    merged = merge_shard(rows, outputs, JobInfo("s00000", "arn:job", "PartiallyCompleted"))
    assert merged.column("record_id").to_pylist() == [f"id{i}" for i in range(6)]  # input order, once each
    assert merged.column("output_text").to_pylist() == ["zero", None, None, "three", None, None]
    assert merged.column("error_code").to_pylist() == [None, "400", NOT_RETURNED, None, NOT_RETURNED, INVALID_INPUT]
    assert merged.column("error_message")[5].as_py() == "ValueError: empty"
    assert "_request" not in merged.column_names and "_input_error" not in merged.column_names
    assert set(merged.column("job_arn").to_pylist()) == {"arn:job"}


def test_failed_job_turns_every_row_into_an_error_with_the_job_message():
    rows = input_rows(3)
    parser = OutputParser(claude(), expected_ids=["id0", "id1", "id2"])
    empty = pa.Table.from_batches([parser.parse_chunk(b"")])
    merged = merge_shard(rows, empty, JobInfo("s00001", "arn:job", "Expired", "job did not start in time"))
    assert merged.column("error_code").to_pylist() == ["JobExpired"] * 3
    assert merged.column("error_message")[0].as_py() == "batch job Expired: job did not start in time"


def test_unparseable_model_output_becomes_an_error_row():
    parser = OutputParser(claude(), expected_ids=["a"])
    line = json.dumps({"recordId": "a", "modelOutput": {"content": "not a list"}}).encode()
    table = pa.Table.from_batches([parser.parse_chunk(line)])
    assert table.column("error_code").to_pylist() == ["UnparseableOutput"]


def test_garbage_line_names_the_file_and_line():
    parser = OutputParser(claude())
    with pytest.raises(ValueError, match=r"s3://b/k.out: line 2: not a Bedrock output record"):
        parser.parse_chunk(ok_line("a", "x") + b"\n{not json\n", where="s3://b/k.out")


def test_embeddings_are_float32_fixed_size_with_nulls_for_errors():
    adapter = adapter_for("amazon.titan-embed-text-v2:0", "InvokeModel", PromptSettings(input_column="q"),
                          InferenceSettings(dimensions=256))
    parser = OutputParser(adapter)
    lines = [json.dumps({"recordId": "a", "modelOutput": {"embedding": [0.25] * 256, "inputTextTokenCount": 4}}).encode(),
             err_line("b")]
    batch = parser.parse_chunk(b"\n".join(lines))
    column = batch.column("embedding")
    assert column.type == pa.list_(pa.float32(), 256)
    assert column[0].as_py()[:2] == [0.25, 0.25] and column[1].as_py() is None


def converse():
    return adapter_for("us.amazon.nova-lite-v1:0", "Converse", PromptSettings(template="{q}"), InferenceSettings())


def titan(dims=256):
    return adapter_for("amazon.titan-embed-text-v2:0", "InvokeModel", PromptSettings(input_column="q"),
                       InferenceSettings(dimensions=dims))


MIXED = {
    "claude": (claude, [
        ok_line("a", "alpha"), err_line("b"),
        json.dumps({"recordId": "c", "modelOutput": {"content": [{"type": "text", "text": "x"},
                    {"type": "tool_use"}, {"type": "text", "text": "y"}], "stop_reason": "max_tokens",
                    "usage": {"input_tokens": 9, "output_tokens": 4}}}).encode(),
        ok_line("a", "dup"), ok_line("zz", "stranger"),
        json.dumps({"recordId": "d", "modelOutput": {"content": [], "usage": {}}}).encode(),
        json.dumps({"recordId": "e"}).encode(),
    ]),
    "converse": (converse, [
        json.dumps({"recordId": "a", "modelOutput": {"output": {"message": {"role": "assistant", "content": [
            {"text": "one"}, {"text": " two"}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}}).encode(),
        err_line("b"),
        json.dumps({"recordId": "c", "modelOutput": {"stopReason": "end_turn"}}).encode(),
    ]),
    "titan": (titan, [
        json.dumps({"recordId": "a", "modelOutput": {"embedding": [0.5] * 256, "inputTextTokenCount": 3}}).encode(),
        err_line("b"),
        json.dumps({"recordId": "c", "modelOutput": {"embedding": [0.5] * 3, "inputTextTokenCount": 3}}).encode(),
    ]),
}


@pytest.mark.parametrize("family", sorted(MIXED))
def test_arrow_fast_path_equals_line_by_line_reference(family, monkeypatch):
    make, lines = MIXED[family]
    expected = ["a", "b", "c", "d", "e"]
    reference = OutputParser(make(), expected_ids=expected)
    slow = reference._parse_lines(lines, "ref")
    fast_parser = OutputParser(make(), expected_ids=expected)
    monkeypatch.setattr(fast_parser, "_parse_lines", lambda *a: pytest.fail("fast path fell back"))
    fast = fast_parser.parse_chunk(b"\n".join(lines) + b"\n")
    def comparable(rows):  # the reference adds the exception's detail to the unparseable message
        return [{**r, "error_message": (r["error_message"] or "").split(": ")[0]} for r in rows]

    assert comparable(fast.to_pylist()) == comparable(slow.to_pylist())
    assert fast_parser.stats == reference.stats


def test_unexpected_shape_falls_back_and_still_parses():
    parser = OutputParser(claude())
    lines = [ok_line("a", "fine"), json.dumps({"recordId": "b", "modelOutput": {"content": "text"}}).encode()]
    batch = parser.parse_chunk(b"\n".join(lines))
    assert batch.column("error_code").to_pylist() == [None, "UnparseableOutput"]


def test_line_chunks_end_on_line_boundaries_and_lose_nothing(s3, bucket):
    from bedrock_assets.storage import iter_line_chunks
    from bedrock_assets.uris import S3Location

    body = b"\n".join(f'{{"n": {i}, "pad": "{"x" * (i % 13)}"}}'.encode() for i in range(200))  # no final newline
    s3.put_object(Bucket=bucket, Key="out/x.jsonl.out", Body=body)
    chunks = list(iter_line_chunks(s3, S3Location(bucket, "out/x.jsonl.out"), chunk_bytes=37))
    assert all(c.endswith(b"\n") for c in chunks) and len(chunks) > 10
    assert b"".join(chunks) == body + b"\n"
