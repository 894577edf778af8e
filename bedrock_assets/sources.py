"""Reading the raw dataset: Parquet / CSV / JSONL, one file or a prefix, local or s3://, in batches."""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bedrock_assets.storage import S3Access, list_objects, local_copy, open_ranged
from bedrock_assets.uris import is_s3_uri, parse_s3_uri


class SourceError(ValueError):
    """Unreadable or inconsistent source data; names the file (and row/column when known)."""


@dataclass(frozen=True)
class SourceFile:
    uri: str  # local path or s3:// URI
    format: str
    size: int


@dataclass
class SourceBatch:
    file: SourceFile
    first_row: int  # 0-based row number of the batch's first row within its file
    batch: pa.RecordBatch


def _format_of(name: str, declared: str | None) -> str | None:
    if declared:
        return declared
    for fmt in FORMATS.values():
        if name.lower().endswith(fmt.extensions):
            return fmt.name
    return None


def resolve_files(uri: str, declared_format: str | None, s3: S3Access) -> list[SourceFile]:
    """The data files a source URI names: the file itself, or every data file under a prefix/dir."""
    candidates: list[tuple[str, int]]
    if is_s3_uri(uri):
        loc = parse_s3_uri(uri, what="source.uri")
        listed = list_objects(s3, loc)
        candidates = [(o.uri, size) for o, size in listed if o.key == loc.key or o.key.startswith(loc.key + "/")]
        exact = [c for c in candidates if c[0] == loc.uri]
        candidates = exact or candidates
    else:
        path = Path(uri)
        if path.is_file():
            candidates = [(str(path), path.stat().st_size)]
        elif path.is_dir():
            candidates = sorted((str(p), p.stat().st_size) for p in path.rglob("*") if p.is_file())
        else:
            raise SourceError(f"source {uri!r}: no such file or directory")
    files = []
    for name, size in candidates:
        fmt = _format_of(name, declared_format)
        if fmt is not None and not Path(name).name.startswith(("_", ".")):
            files.append(SourceFile(name, fmt, size))
    if not files:
        raise SourceError(
            f"source {uri!r}: no data files found (expected {sorted(FORMATS)}, by extension or source.format)"
        )
    formats = {f.format for f in files}
    if len(formats) > 1:
        raise SourceError(f"source {uri!r} mixes formats {sorted(formats)}; set source.format or split it")
    return files


@contextmanager
def _local_copy(file: SourceFile, s3: S3Access) -> Iterator[Path]:
    """A local path for the file: itself, or a temporary copy of the object."""
    if not is_s3_uri(file.uri):
        yield Path(file.uri)
        return
    with local_copy(s3, parse_s3_uri(file.uri)) as path:
        yield path


def read_columns(file: SourceFile, s3: S3Access) -> list[str]:
    """Column names of one file, from its header, footer or first line (ranged reads of an S3 object)."""
    if file.size == 0:
        raise SourceError(f"{file.uri}: the file is empty (0 bytes); expected {file.format} data with a header")
    if is_s3_uri(file.uri):
        with open_ranged(s3, parse_s3_uri(file.uri), file.size) as head:
            try:
                return FORMATS[file.format].columns(head, file)
            except (pa.ArrowInvalid, OSError):
                pass  # unreadable: the local copy below says where
    with _local_copy(file, s3) as path:
        try:
            return FORMATS[file.format].columns(path, file)
        except (pa.ArrowInvalid, OSError) as e:
            raise SourceError(_unreadable(path, file, e)) from None


def _unreadable(path: Path, file: SourceFile, error: Exception) -> str:
    """Why a file cannot be read, naming the first line that is not UTF-8 when that is the cause, or the
    line of a CSV record with the wrong number of fields (Arrow's parser, reading blocks in parallel,
    gives the record but not its line)."""
    if file.format == "csv" and "Expected" in str(error) and (where := _csv_line_with_wrong_fields(path)):
        return f"{file.uri}: {where}; quote a value that holds the delimiter, or fix the line (nothing was submitted)"
    if FORMATS[file.format].text and "UTF8" in str(error).replace("UTF-8", "UTF8"):
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return (
                        f"{file.uri}: line {number} is not UTF-8 (byte 0x{line[bad.start]:02x} at column "
                        f"{bad.start + 1}); save the file as UTF-8"
                    )
    return f"{file.uri}: cannot read as {file.format}: {error}"


def _csv_line_with_wrong_fields(path: Path) -> str | None:
    """'line N: expected X fields (as the header has), got Y' for the first such record, streaming the file."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        start = reader.line_num + 1  # a record's first line: quoted values may span lines
        for record in reader:
            if record and len(record) != len(header):  # a blank line is no record
                return f"line {start}: expected {len(header)} fields (as the header has), got {len(record)}"
            start = reader.line_num + 1
    return None


PREFETCH = 4  # files of an S3 prefix downloaded ahead of the one being read (at most this many on disk more)


def _fetch(file: SourceFile, s3: S3Access) -> tuple[ExitStack, Path]:
    stack = ExitStack()
    try:
        return stack, stack.enter_context(_local_copy(file, s3))
    except BaseException:
        stack.close()
        raise


def prefetched(files: Sequence[SourceFile], s3: S3Access, ahead: int = PREFETCH) -> Iterator[tuple[SourceFile, Path]]:
    """Each file's local path, in order, while the next ``ahead`` S3 objects download: a prefix of many small
    files is not read one request at a time. Each copy is removed once the next is asked for."""
    if ahead <= 0 or sum(is_s3_uri(f.uri) for f in files) < 2:
        for file in files:
            with _local_copy(file, s3) as path:
                yield file, path
        return
    pending: deque[Future[tuple[ExitStack, Path]]] = deque()
    with ThreadPoolExecutor(ahead, thread_name_prefix="bedrock-assets-source") as pool:
        try:
            for i, file in enumerate(files):
                while len(pending) < ahead + 1 and i + len(pending) < len(files):
                    pending.append(pool.submit(_fetch, files[i + len(pending)], s3))
                stack, path = pending.popleft().result()
                with stack:
                    yield file, path
        finally:
            for future in pending:  # stopped early: what was fetched ahead is removed too
                if not future.cancel() and future.exception() is None:
                    future.result()[0].close()


def iter_batches(
    files: list[SourceFile], s3: S3Access, batch_rows: int = 16_384, ahead: int = PREFETCH
) -> Iterator[SourceBatch]:
    """Every row of every file in order, as record batches; columns and their types must agree across files."""
    first: tuple[SourceFile, pa.Schema] | None = None
    for file, path in prefetched(files, s3, ahead):
        first_row = 0
        for batch in _read(path, file, batch_rows):
            if first is None:  # every column nullable: files may differ in that alone
                first = (file, pa.schema([f.with_nullable(True) for f in batch.schema]))
            if not batch.schema.equals(first[1]):
                batch = _as_first(file, batch, *first)
            yield SourceBatch(file, first_row, batch)
            first_row += batch.num_rows


def _as_first(file: SourceFile, batch: pa.RecordBatch, first_file: SourceFile, first: pa.Schema) -> pa.RecordBatch:
    """The batch in the first file's schema; SourceError unless it has the first file's columns, in order, of
    the same types (a column with no type, only nulls, takes the first file's; nullability may differ)."""
    schema = batch.schema
    if schema.names != first.names:
        raise SourceError(f"{file.uri}: columns {schema.names} differ from the first file's {first.names}")
    for field in schema:
        expected = first.field(field.name).type
        if field.type != expected and not pa.types.is_null(field.type):
            raise SourceError(
                f"{file.uri}: column {field.name!r} is {field.type}, but {expected} in {first_file.uri}; make "
                "its type the same in every file of the source (nothing was submitted)"
            )
    return batch.cast(first)


def _read(path: Path, file: SourceFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        yield from FORMATS[file.format].batches(path, file, batch_rows)
    except (pa.ArrowInvalid, OSError) as e:
        raise SourceError(_unreadable(path, file, e)) from None


# ---- the formats ---------------------------------------------------------------------------------


def _parquet_columns(source: Path | BinaryIO, file: SourceFile) -> list[str]:
    return pq.read_schema(source).names


def _parquet_batches(path: Path, file: SourceFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    # pre_buffer would cache every row group read until the file closes: memory = file size
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_rows)


_CSV = pacsv.ParseOptions(newlines_in_values=True)


def _csv_columns(source: Path | BinaryIO, file: SourceFile) -> list[str]:
    return pacsv.open_csv(source, parse_options=_CSV).schema.names


def _csv_batches(path: Path, file: SourceFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    # all columns as text: type inference per block would disagree between blocks
    names = pacsv.open_csv(path, parse_options=_CSV).schema.names
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=8 << 20),
        parse_options=_CSV,
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
    )
    for batch in reader:
        yield from (batch.slice(i, batch_rows) for i in range(0, batch.num_rows, batch_rows))


def _jsonl_columns(source: Path | BinaryIO, file: SourceFile) -> list[str]:
    with open(source, "rb") if isinstance(source, Path) else nullcontext(source) as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                return list(_json_row(line, file, number).keys())
    raise SourceError(f"{file.uri}: empty JSONL file")


def _json_row(line: bytes, file: SourceFile, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise SourceError(f"{file.uri}: line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise SourceError(f"{file.uri}: line {number}: expected a JSON object, got {type(row).__name__}")
    return row


def _read_jsonl(path: Path, file: SourceFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    columns: list[str] | None = None
    rows: list[dict[str, Any]] = []

    def flush() -> pa.RecordBatch:
        assert columns is not None
        data = {c: [_scalar(r.get(c)) for r in rows] for c in columns}
        return pa.RecordBatch.from_pydict(data, schema=pa.schema([(c, pa.string()) for c in columns]))

    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = _json_row(line, file, number)
            if columns is None:
                columns = list(row.keys())
            extra = set(row) - set(columns)
            if extra:
                raise SourceError(
                    f"{file.uri}: line {number}: unexpected field(s) {sorted(extra)}; the first line has {columns}"
                )
            rows.append(row)
            if len(rows) >= batch_rows:
                yield flush()
                rows = []
    if rows:
        yield flush()


def _scalar(value: Any) -> str | None:
    """JSONL values as text (the prompt renders text); nested values keep their JSON form."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Format:
    """A source format: its file extensions, how to read its column names (from a local file, or from
    the ranged reads of an S3 object) and its rows, and whether it is text (an unreadable file may have
    a line that is not UTF-8)."""

    name: str
    extensions: tuple[str, ...]
    columns: Callable[[Path | BinaryIO, SourceFile], list[str]]
    batches: Callable[[Path, SourceFile, int], Iterator[pa.RecordBatch]]
    text: bool


FORMATS = {
    f.name: f
    for f in (
        Format("parquet", (".parquet", ".pq"), _parquet_columns, _parquet_batches, text=False),
        Format("csv", (".csv",), _csv_columns, _csv_batches, text=True),
        Format("jsonl", (".jsonl", ".ndjson"), _jsonl_columns, _read_jsonl, text=True),
    )
}
