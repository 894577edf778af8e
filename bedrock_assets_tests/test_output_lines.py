"""Output parsing: Bedrock's .jsonl.out lines, as they come, into normalized rows."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bedrock_assets import output_lines
from bedrock_assets.bedrock.error_classes import UNPARSEABLE
from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.output_lines import OutputParser
from bedrock_assets_tests.helpers import claude, err_line, ok_line


def test_unparseable_model_output_becomes_an_error_row():
    parser = OutputParser(claude(), expected_ids=["a"])
    line = json.dumps({"recordId": "a", "modelOutput": {"content": "not a list"}}).encode()
    table = pa.Table.from_batches([parser.parse_chunk(line)])
    assert table.column("error_code").to_pylist() == ["UnparseableOutput"]


@pytest.mark.parametrize("path", ["arrow", "lines"])
def test_a_line_that_is_not_a_whole_record_is_counted_and_named_never_fatal(path):
    parser = OutputParser(claude(), expected_ids=["a", "b", "c", "d"])
    lines = [
        ok_line("a", "x"),
        b"{not json",
        ok_line("b", "y")[:40],  # cut short: its recordId can still be read
        json.dumps({"modelOutput": {"content": []}}).encode(),  # JSON, but no recordId
        ok_line("d", "z"),
    ]
    chunk = b"\n".join(lines)
    batch = (
        parser.parse_chunk(chunk, where="s3://b/k.out")
        if path == "arrow"
        else parser.parse_lines(lines, "s3://b/k.out")
    )
    rows = {r["record_id"]: r for r in batch.to_pylist()}
    assert sorted(rows) == ["a", "b", "d"]  # c has no line: RecordNotReturned at merge
    assert rows["b"]["error_code"] == "UnparseableOutput"
    assert rows["b"]["error_message"].startswith("line 3 of s3://b/k.out is not a whole JSON output record: b'{")
    assert (rows["a"]["error_code"], rows["d"]["error_code"]) == (None, None)
    assert parser.stats.unreadable_lines == 3 and parser.stats.lines == 5
    assert parser.stats.unreadable[0] == "s3://b/k.out line 2: b'{not json'"
    assert [u.split(":")[1] for u in parser.stats.unreadable] == [
        "//b/k.out line 2",
        "//b/k.out line 3",
        "//b/k.out line 4",
    ]


def test_line_numbers_count_per_file_across_chunks():
    parser = OutputParser(claude(), expected_ids=["a", "b", "c"])
    parser.parse_chunk(ok_line("a", "x"), where="s3://b/one.out")
    parser.parse_chunk(b"garbage", where="s3://b/one.out")
    parser.parse_chunk(b"garbage", where="s3://b/two.out")
    assert parser.stats.unreadable == ["s3://b/one.out line 2: b'garbage'", "s3://b/two.out line 1: b'garbage'"]


@pytest.mark.parametrize("path", ["arrow", "lines"])
@pytest.mark.parametrize("split", [False, True])
def test_the_first_line_per_record_wins_and_repeats_that_differ_are_flagged(split, path):
    parser = OutputParser(claude(), expected_ids=["a", "b"])
    lines = [
        ok_line("a", "first"),
        ok_line("b", "same"),
        ok_line("a", "second"),
        b"  " + ok_line("b", "same").replace(b'":', b'": '),  # the same outcome written otherwise: no conflict
        ok_line("zz", "?"),
    ]
    chunks = [lines[:2], lines[2:]] if split else [lines]
    parse = parser.parse_chunk if path == "arrow" else lambda c: parser.parse_lines(c.split(b"\n"), "k.out")
    batches = [parse(b"\n".join(c)) for c in chunks]
    rows = [r for b in batches for r in b.to_pylist()]
    assert [(r["record_id"], r["output_text"]) for r in rows] == [("a", "first"), ("b", "same")]
    assert (parser.stats.duplicates, parser.stats.unknown_ids, len(parser.repeats) > 0) == (2, 1, True)
    parser.note_conflicts(pa.Table.from_batches(batches))  # once the kept rows are written
    stats = parser.stats
    assert (stats.conflicting_duplicates, stats.conflicting_ids, parser.repeats) == (1, ["a"], [])
    assert stats.fallback_chunks == 0


def test_blank_lines_in_a_chunk_keep_the_arrow_path_and_two_records_on_one_line_do_not():
    parser = OutputParser(claude(), expected_ids=["a", "b", "c"])
    batch = parser.parse_chunk(ok_line("a", "x") + b"\n\n  \r\n" + ok_line("b", "y") + b"\n")
    assert batch.column("record_id").to_pylist() == ["a", "b"] and parser.stats.fallback_chunks == 0
    joined = parser.parse_chunk(ok_line("c", "z") + ok_line("c", "w") + b"\n")  # not one record per line
    assert parser.stats.fallback_chunks == 1 and parser.stats.unreadable_lines == 1
    assert joined.to_pylist()[0]["error_code"] == UNPARSEABLE  # its id can be read: the record is retried


def test_embeddings_are_float32_fixed_size_with_nulls_for_errors():
    adapter = adapter_for(
        "amazon.titan-embed-text-v2:0",
        "InvokeModel",
        PromptSettings(input_column="q"),
        InferenceSettings(dimensions=256),
    )
    parser = OutputParser(adapter)
    lines = [
        json.dumps({"recordId": "a", "modelOutput": {"embedding": [0.25] * 256, "inputTextTokenCount": 4}}).encode(),
        err_line("b"),
    ]
    batch = parser.parse_chunk(b"\n".join(lines))
    column = batch.column("embedding")
    assert column.type == pa.list_(pa.float32(), 256)
    assert column[0].as_py()[:2] == [0.25, 0.25] and column[1].as_py() is None


def converse():
    return adapter_for("us.amazon.nova-lite-v1:0", "Converse", PromptSettings(template="{q}"), InferenceSettings())


def titan(dims=256):
    return adapter_for(
        "amazon.titan-embed-text-v2:0",
        "InvokeModel",
        PromptSettings(input_column="q"),
        InferenceSettings(dimensions=dims),
    )


def invoke(model, **settings):
    def make():
        prompt = PromptSettings(input_column="q") if "embed" in model else PromptSettings(template="{q}")
        return adapter_for(model, "InvokeModel", prompt, InferenceSettings(**settings))

    return make


def out_line(rid, model_output):
    return json.dumps({"recordId": rid, "modelOutput": model_output}).encode()


MIXED = {
    "claude": (
        claude,
        [
            ok_line("a", "alpha"),
            err_line("b"),
            json.dumps(
                {
                    "recordId": "c",
                    "modelOutput": {
                        "content": [{"type": "text", "text": "x"}, {"type": "tool_use"}, {"type": "text", "text": "y"}],
                        "stop_reason": "max_tokens",
                        "usage": {"input_tokens": 9, "output_tokens": 4},
                    },
                }
            ).encode(),
            ok_line("a", "dup"),
            ok_line("zz", "stranger"),
            json.dumps({"recordId": "d", "modelOutput": {"content": [], "usage": {}}}).encode(),
            json.dumps({"recordId": "e"}).encode(),
        ],
    ),
    "converse": (
        converse,
        [
            json.dumps(
                {
                    "recordId": "a",
                    "modelOutput": {
                        "output": {"message": {"role": "assistant", "content": [{"text": "one"}, {"text": " two"}]}},
                        "stopReason": "end_turn",
                        "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5},
                    },
                }
            ).encode(),
            err_line("b"),
            json.dumps({"recordId": "c", "modelOutput": {"stopReason": "end_turn"}}).encode(),
        ],
    ),
    "titan": (
        titan,
        [
            json.dumps({"recordId": "a", "modelOutput": {"embedding": [0.5] * 256, "inputTextTokenCount": 3}}).encode(),
            err_line("b"),
            json.dumps({"recordId": "c", "modelOutput": {"embedding": [0.5] * 3, "inputTextTokenCount": 3}}).encode(),
        ],
    ),
    "nova": (
        invoke("amazon.nova-micro-v1:0"),
        [
            out_line(
                "a",
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": "x"}, {"text": "y"}]}},
                    "stopReason": "max_tokens",
                    "usage": {"inputTokens": 4, "outputTokens": 9, "totalTokens": 13},
                },
            ),
            err_line("b"),
            out_line("c", {"output": {}, "stopReason": "end_turn"}),
        ],
    ),
    "llama": (
        invoke("meta.llama3-2-3b-instruct-v1:0"),
        [
            out_line(
                "a",
                {"generation": "four", "prompt_token_count": 12, "generation_token_count": 2, "stop_reason": "stop"},
            ),
            err_line("b"),
            out_line("c", {"generation": None, "prompt_token_count": 12, "stop_reason": "stop"}),
            out_line("d", {"generation": "no counts"}),
        ],
    ),
    "mistral": (
        invoke("mistral.mixtral-8x7b-instruct-v0:1"),
        [
            out_line("a", {"outputs": [{"text": "one", "stop_reason": "length"}]}),
            err_line("b"),
            out_line("c", {"outputs": []}),
            out_line("d", {"outputs": [{"text": "x", "stop_reason": "stop"}, {"text": "y", "stop_reason": "stop"}]}),
            out_line("e", {"outputs": [{"stop_reason": "stop"}]}),
        ],
    ),
    "mistral-chat": (
        invoke("mistral.mistral-large-2407-v1:0"),
        [
            out_line(
                "a",
                {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "stop_reason": "stop"}]},
            ),
            err_line("b"),
            out_line("c", {"choices": [{"index": 0, "message": None, "stop_reason": "stop"}]}),
            out_line("d", {"choices": None}),
        ],
    ),
    "cohere": (
        invoke("cohere.embed-english-v3"),
        [
            out_line(
                "a",
                {
                    "id": "x",
                    "response_type": "embeddings_by_type",
                    "embeddings": {"float": [[0.5] * 1024]},
                    "texts": ["q"],
                },
            ),
            err_line("b"),
            out_line("c", {"response_type": "embeddings_by_type", "embeddings": {"float": [[0.5] * 1024] * 2}}),
            out_line("d", {"response_type": "embeddings_by_type", "embeddings": {"float": [[0.5] * 3]}}),
            out_line("e", {"response_type": "embeddings_by_type", "embeddings": {"int8": [[1] * 1024]}}),
        ],
    ),
    "titan-v1": (
        invoke("amazon.titan-embed-text-v1"),
        [
            out_line("a", {"embedding": [0.25] * 1536, "inputTextTokenCount": 6}),
            err_line("b"),
            out_line("c", {"embedding": [0.25] * 1024, "inputTextTokenCount": 6}),
            out_line("d", {"embedding": [0.25] * 1536}),
        ],
    ),
}


@pytest.mark.parametrize("family", sorted(MIXED))
def test_arrow_fast_path_equals_line_by_line_reference(family):
    make, lines = MIXED[family]
    expected = ["a", "b", "c", "d", "e"]
    reference = OutputParser(make(), expected_ids=expected)
    slow = reference.parse_lines(lines, "ref")
    fast_parser = OutputParser(make(), expected_ids=expected)
    fast = fast_parser.parse_chunk(b"\n".join(lines) + b"\n")
    assert fast_parser.stats.fallback_chunks == 0  # the Arrow path took the whole chunk

    def comparable(rows):  # the reference adds the exception's detail to the unparseable message
        return [{**r, "error_message": (r["error_message"] or "").split(": ")[0]} for r in rows]

    assert comparable(fast.to_pylist()) == comparable(slow.to_pylist())
    assert fast_parser.stats == reference.stats


def test_cohere_answer_without_embedding_types_falls_back_to_the_reference_parse():
    parser = OutputParser(invoke("cohere.embed-english-v3")(), expected_ids=["a", "b"])
    floats = {"id": "x", "response_type": "embeddings_floats", "embeddings": [[0.5] * 1024], "texts": ["q"]}
    batch = parser.parse_chunk(b"\n".join([out_line("a", floats), out_line("b", {**floats, "embeddings": []})]))
    assert parser.stats.fallback_chunks == 1  # a bare list of vectors is not the embeddings_by_type shape
    assert batch.column("embedding")[0].as_py()[:2] == [0.5, 0.5] and batch.column("embedding")[1].as_py() is None
    assert batch.column("error_code").to_pylist() == [None, "UnparseableOutput"]


def test_unexpected_shape_falls_back_and_still_parses():
    parser = OutputParser(claude())
    lines = [ok_line("a", "fine"), json.dumps({"recordId": "b", "modelOutput": {"content": "text"}}).encode()]
    batch = parser.parse_chunk(b"\n".join(lines))
    assert batch.column("error_code").to_pylist() == [None, "UnparseableOutput"]
    assert parser.stats.fallback_chunks == 1


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_lines_are_counted_a_block_at_a_time_blank_ones_and_an_unterminated_last_one_included(monkeypatch, block):
    monkeypatch.setattr(output_lines, "_COUNT_BLOCK", block)
    for data in (b"a\n", b"a\nb", b"\n\n\n", b"ab\n\ncd\nef", b"x" * 20 + b"\n" + b"y" * 13, b"\n"):
        assert output_lines._segments(memoryview(data)) == len(data.split(b"\n")) - (data[-1:] == b"\n")
