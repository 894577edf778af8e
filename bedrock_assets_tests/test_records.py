"""Request lines built in Arrow are byte-identical to json.dumps; ids are stable; batching changes nothing."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.records import derived_record_ids, json_escape, line_buffers, prepare_batch
from bedrock_assets.sample.simplecot import generate_simplecot_table
from bedrock_assets.sources import SourceBatch, SourceError, SourceFile
from bedrock_assets_tests.models.oracles import build, text_for, validate

TRICKY = [
    "plain",
    'quote " and \\ backslash',
    "new\nline\ttab\rcr",
    "ctl \x00\x01\x1f\x7f \b\f",
    "ünï 日本 🎉",
    "{braces} {{x}}",
    "",
    "\u2028 sep",
    None,
]


def request_line(record_id: str, body_json: str) -> str:
    """The reference: a Bedrock input line built with json.dumps."""
    return f'{{"recordId":{json.dumps(record_id)},"modelInput":{body_json}}}'


def joined_lines(requests) -> bytes:
    return b"".join(piece.to_pybytes() for piece in line_buffers(requests))


ADAPTERS = {
    "claude": adapter_for(
        "anthropic.claude-3-haiku-20240307-v1:0",
        "InvokeModel",
        PromptSettings(template="Q: {q}\n{task}", system='say "hi"'),
        InferenceSettings(temperature=0.5, stop=("\n\nHuman:",)),
    ),
    "titan": adapter_for(
        "amazon.titan-embed-text-v2:0",
        "InvokeModel",
        PromptSettings(input_column="q"),
        InferenceSettings(dimensions=512),
    ),
    "converse": adapter_for("us.amazon.nova-pro-v1:0", "Converse", PromptSettings(template="{q}"), InferenceSettings()),
    "nova": adapter_for(
        "us.amazon.nova-pro-v1:0",
        "InvokeModel",
        PromptSettings(template="{q}", system='say "hi"'),
        InferenceSettings(stop=("\n\nHuman:",)),
    ),
    "llama3": adapter_for(
        "meta.llama3-1-70b-instruct-v1:0",
        "InvokeModel",
        PromptSettings(template="Q: {q}\n{task}", system='say "hi"\n'),
        InferenceSettings(temperature=0.5),
    ),
    "llama4": adapter_for(
        "us.meta.llama4-scout-17b-instruct-v1:0", "InvokeModel", PromptSettings(template="{q}"), InferenceSettings()
    ),
    "mistral": adapter_for(
        "mistral.mistral-small-2402-v1:0",
        "InvokeModel",
        PromptSettings(template="{q}", system="tab\there"),
        InferenceSettings(stop=("</s>",)),
    ),
    "mistral-chat": adapter_for(
        "mistral.mistral-large-2407-v1:0",
        "InvokeModel",
        PromptSettings(template="{q} ({task})", system="ünï"),
        InferenceSettings(top_p=0.5),
    ),
    # the template's own fixed text is escaped once, apart from the column values: quotes, backslashes,
    # control characters and emoji in it must come out as json.dumps writes them
    "claude-tricky-template": adapter_for(
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "InvokeModel",
        PromptSettings(template='He said "{q}"\t\\path\x01 🎉\n{task}', system="s"),
        InferenceSettings(),
    ),
    "cohere": adapter_for(
        "cohere.embed-multilingual-v3",
        "InvokeModel",
        PromptSettings(input_column="q"),
        InferenceSettings(input_type="classification"),
    ),
    "titan-v1": adapter_for(
        "amazon.titan-embed-text-v1", "InvokeModel", PromptSettings(input_column="q"), InferenceSettings()
    ),
}


def source_batch(table: pa.Table, first_row: int = 0) -> SourceBatch:
    return SourceBatch(SourceFile("/data/in.parquet", "parquet", 0), first_row, table.to_batches()[0])


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_vectorized_lines_equal_json_dumps_of_each_body(name):
    adapter = ADAPTERS[name]
    table = pa.table({"q": TRICKY, "task": ["t"] * len(TRICKY)})
    prepared = prepare_batch(source_batch(table), 0, adapter, None)
    rows = table.to_pylist()
    for i, (row, line) in enumerate(zip(rows, prepared.table.column("_request").to_pylist())):
        body = build(adapter, row)
        try:
            validate(adapter, body)
        except ValueError:
            assert line is None and prepared.table.column("_input_error")[i].as_py()
            continue
        expected = request_line(f"r{i:011d}", json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        assert line == expected
        assert json.loads(line)["modelInput"] == body
        assert prepared.line_bytes[i] == len(expected.encode()) + 1


def test_derived_ids_are_positional_and_stable():
    assert derived_record_ids(99, 3).to_pylist() == ["r00000000099", "r00000000100", "r00000000101"]


def test_batching_does_not_change_ids_or_lines():
    table = generate_simplecot_table(500, seed=3)
    adapter = adapter_for(
        "anthropic.claude-3-haiku-20240307-v1:0",
        "InvokeModel",
        PromptSettings(template="{task}: {source}"),
        InferenceSettings(),
    )
    whole = prepare_batch(source_batch(table), 0, adapter, None).table
    parts = [prepare_batch(source_batch(table.slice(i, 64), i), i, adapter, None).table for i in range(0, 500, 64)]
    streamed = pa.concat_tables(parts)
    for column in ("record_id", "source_row", "_request"):
        assert streamed.column(column).to_pylist() == whole.column(column).to_pylist()
    assert joined_lines(streamed.column("_request")) == joined_lines(whole.column("_request"))


def test_user_id_column_problems_name_file_row_and_column():
    adapter = ADAPTERS["claude"]
    table = pa.table({"q": ["a", "b"], "task": ["t", "t"], "id": ["x1", None]})
    with pytest.raises(SourceError, match=r"/data/in.parquet: row 11: id column 'id' is empty"):
        prepare_batch(source_batch(table, first_row=10), 10, adapter, "id")
    table = pa.table({"q": ["a"], "task": ["t"], "id": ["x" * 65]})
    with pytest.raises(SourceError, match="longer than 64"):
        prepare_batch(source_batch(table), 0, adapter, "id")


def test_joined_lines_skips_rejected_rows():
    lines = pa.chunked_array([pa.array(["a", None, "b"]), pa.array([None, "c"])])
    assert joined_lines(lines) == b"a\nb\nc\n"
    assert joined_lines(pa.array([None, None], pa.string())) == b""


def test_json_escape_equals_json_dumps_for_every_character_it_escapes_in_slices_and_chunks():
    every = [chr(c) for c in range(0x20)] + ['"', "\\", "\x7f", "é", "日本", "🎉", "\u2028"]
    values = [f"a{c}b{c}" for c in every] + ["", None, "only plain text"] + ["\\n literal", '\\"']
    array = pa.array(values, pa.string())
    expected = [None if v is None else json.dumps(v, ensure_ascii=False)[1:-1] for v in values]
    assert json_escape(array).to_pylist() == expected
    assert json_escape(array.slice(5, 20)).to_pylist() == expected[5:25]  # offsets that do not start at 0
    chunked = pa.chunked_array([array.slice(0, 10), array.slice(10)])
    assert pa.concat_arrays(json_escape(chunked).chunks).to_pylist() == expected
    assert json_escape(pa.array(["no escapes here"] * 3)).to_pylist() == ["no escapes here"] * 3
    assert json_escape(pa.array([], pa.string())).to_pylist() == []


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_text_chars_counts_the_rendered_texts_without_rendering_them(name):
    adapter = ADAPTERS[name]
    table = pa.table({"q": TRICKY, "task": ["t"] * len(TRICKY)})
    rendered = [text_for(adapter, row) for row in table.to_pylist()]
    assert adapter.text_chars(table) == sum(len(t) for t in rendered) > 0
    assert adapter.texts(table).to_pylist() == rendered
