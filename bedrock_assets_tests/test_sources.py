"""Reading sources: what cannot be read is refused in one line naming the file, line or column."""

from __future__ import annotations

from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bedrock_assets import sources
from bedrock_assets.records import prepare_batch
from bedrock_assets.sources import SourceError, iter_batches, read_columns, resolve_files
from bedrock_assets.storage import S3Access
from bedrock_assets_tests.helpers import one_spec, pipeline_dict


def first_error(path) -> str:
    files = resolve_files(str(path), None, S3Access(None))
    spec = one_spec(pipeline_dict("src", "bkt", prompt={"template": "{q} {task}"}))
    with pytest.raises(SourceError) as info:
        read_columns(files[0], S3Access(None))
        for sb in iter_batches(files, S3Access(None)):
            prepare_batch(sb, 0, spec.adapter(), None)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_an_empty_csv_is_named(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    assert (
        first_error(tmp_path / "empty.csv") == f"{tmp_path / 'empty.csv'}: the file is empty (0 bytes); "
        "expected csv data with a header"
    )


def test_a_csv_that_is_not_utf8_names_the_line_and_byte(tmp_path):
    (tmp_path / "latin.csv").write_bytes("q,task\nok,t\ncaf\xe9,t\n".encode("latin-1"))
    assert (
        first_error(tmp_path / "latin.csv") == f"{tmp_path / 'latin.csv'}: line 3 is not UTF-8 (byte 0xe9 at "
        "column 4); save the file as UTF-8"
    )


def test_a_nested_column_in_the_template_is_named_with_its_type(tmp_path):
    pq.write_table(pa.table({"q": [["a", "b"], ["c"]], "task": ["t", "u"]}), tmp_path / "nested.parquet")
    message = first_error(tmp_path / "nested.parquet")
    assert message.startswith(f"{tmp_path / 'nested.parquet'}: column 'q' is list<element: string>")
    assert "the prompt needs text, numbers or dates" in message


def test_a_column_whose_type_differs_between_files_is_refused_naming_both_files(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    pq.write_table(pa.table({"q": ["a"], "task": ["t"]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"q": ["b"], "task": [7]}), folder / "part-1.parquet")
    assert first_error(folder) == (
        f"{folder / 'part-1.parquet'}: column 'task' is int64, but string in {folder / 'part-0.parquet'}; make its "
        "type the same in every file of the source (nothing was submitted)"
    )


def test_files_that_differ_only_in_nullability_or_an_all_null_column_read_as_one_schema(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    strict = pa.schema([pa.field("q", pa.string(), nullable=False), pa.field("task", pa.string())])
    pq.write_table(pa.table({"q": ["a"], "task": ["t"]}, schema=strict), folder / "part-0.parquet")
    pq.write_table(pa.table({"q": ["b"], "task": pa.nulls(1)}), folder / "part-1.parquet")
    files = resolve_files(str(folder), None, S3Access(None))
    batches = [sb.batch for sb in iter_batches(files, S3Access(None))]
    assert {b.schema for b in batches} == {pa.schema([pa.field("q", pa.string()), pa.field("task", pa.string())])}
    assert pa.Table.from_batches(batches).column("task").to_pylist() == ["t", None]


def test_a_source_column_named_like_one_the_pipeline_adds_is_refused_before_anything_runs():
    from bedrock_assets.spec import SpecError

    spec = one_spec(pipeline_dict("src", "bkt", prompt={"template": "{q}"}))
    with pytest.raises(SpecError, match=r"s3://bkt/in.parquet has column\(s\) \['attempts', 'error_code'\], which"):
        spec.check_columns(["q", "attempts", "error_code"], "s3://bkt/in.parquet")


def test_a_csv_record_with_too_many_fields_names_its_line_after_a_multi_line_value(tmp_path):
    (tmp_path / "commas.csv").write_bytes(b'q,task\nok,t\n"two\nlines",t\nthree,fields,here\nfine,t\n')
    assert first_error(tmp_path / "commas.csv") == (
        f"{tmp_path / 'commas.csv'}: line 5: expected 2 fields (as the header has), got 3; quote a value that "
        "holds the delimiter, or fix the line (nothing was submitted)"
    )


def test_a_prefix_of_many_s3_files_reads_in_order_with_files_ahead_and_leaves_no_copy(s3, bucket, monkeypatch):
    for i in range(12):
        table = pa.table({"task": [f"t{i}"] * 3, "source": [f"file {i} row {j}" for j in range(3)]})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        s3.put_object(Bucket=bucket, Key=f"src/part-{i:03d}.parquet", Body=sink.getvalue().to_pybytes())
    access = S3Access(s3)
    files = resolve_files(f"s3://{bucket}/src/", None, access)
    open_copies: set[str] = set()
    real = sources._local_copy

    @contextmanager
    def counted(file, s3_access):
        with real(file, s3_access) as path:
            open_copies.add(file.uri)
            try:
                yield path
            finally:
                open_copies.discard(file.uri)

    monkeypatch.setattr(sources, "_local_copy", counted)
    one_at_a_time = [sb.batch.column("source").to_pylist() for sb in iter_batches(files, access, ahead=0)]
    ahead = [sb.batch.column("source").to_pylist() for sb in iter_batches(files, access, ahead=4)]
    assert ahead == one_at_a_time == [[f"file {i} row {j}" for j in range(3)] for i in range(12)]
    assert open_copies == set()
    reading = iter_batches(files, access, ahead=4)
    next(reading)
    assert 1 <= len(open_copies) <= 5  # the file being read and at most 4 downloaded ahead, no more
    reading.close()  # stopped early (an error downstream): every copy is removed
    assert open_copies == set()
