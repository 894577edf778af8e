"""Per-record preparation: stable record ids and the Bedrock JSONL request line for each row.

Everything here is vectorized with Arrow compute: a request line is the model body's fixed JSON
frame around the row's JSON-escaped text, byte-identical to ``json.dumps(..., ensure_ascii=False,
separators=(",", ":"))`` of the same body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.models import ModelAdapter
from bedrock_assets.sources import SourceBatch, SourceError

# Lineage and request columns carried with every input row; the underscored ones are internal.
RECORD_ID = "record_id"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
REQUEST = "_request"
INPUT_ERROR = "_input_error"
# in a retry shard's rows: the max_tokens a row's request was raised to (retry.truncated_max_tokens), else null
MAX_TOKENS = "_max_tokens"
CACHE_KEY = "_cache_key"  # in shard parts: the record's key in the record cache (null: rejected before submission)
CACHED_FROM = "_cached_from"  # in shard parts: the cache segment that answers the row (null: it is sent)
INTERNAL_COLUMNS = (REQUEST, INPUT_ERROR, MAX_TOKENS, CACHE_KEY, CACHED_FROM)
ANSWERED_BY = "cached_from"  # a merged row's: the job whose answer the record cache gave it (null: answered now)
# What a merged row adds to its input columns: lineage, and the outcome of its request.
LINEAGE = (SOURCE_FILE, SOURCE_ROW, "shard", "job_arn", "attempts", ANSWERED_BY)
OUTCOME = ("output_text", "embedding", "stop_reason", "input_tokens", "output_tokens", "error_code", "error_message")
MAX_RECORD_ID = 64

# json.dumps escapes: backslash and quote, the short forms, then \u00XX for other control chars
_SHORT_ESCAPES = [
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
]
_OTHER_CONTROL = [chr(c) for c in range(0x20) if chr(c) not in "\n\r\t\b\f"]
# every character json.dumps escapes (ensure_ascii=False), backslash first: later escapes add backslashes
_ESCAPES = {**dict(_SHORT_ESCAPES), **{c: f"\\u{ord(c):04x}" for c in _OTHER_CONTROL}}


@dataclass
class PreparedBatch:
    """Rows with lineage columns, their request lines, and per-row shard weights."""

    table: pa.Table
    weights: np.ndarray  # 1 for a row sent to Bedrock, 0 for a row rejected before submission
    line_bytes: np.ndarray  # bytes of the JSONL line including its newline; 0 when rejected


def json_escape(texts: pa.Array) -> pa.Array:
    """JSON string-body escaping of every value, exactly as ``json.dumps(ensure_ascii=False)``.

    One replace pass per character that needs escaping and occurs in the values (usually just the
    newline), found with one vectorized pass over their bytes.
    """
    present = _escaped_characters_in(texts)
    for raw, escaped in _ESCAPES.items():
        if raw in present:
            texts = pc.replace_substring(texts, raw, escaped)
    return texts


def _escaped_characters_in(texts: pa.Array) -> set[str]:
    """Which characters that JSON escapes (quote, backslash, control characters) occur in the values.

    Scans the UTF-8 bytes: every such character is one ASCII byte, and no byte of a multi-byte
    sequence is ASCII.
    """
    if isinstance(texts, pa.ChunkedArray):
        return set().union(*(_escaped_characters_in(chunk) for chunk in texts.chunks))
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        return set(_ESCAPES)  # another layout (views, dictionaries): every replace pass, as before
    if len(texts) == 0 or texts.buffers()[2] is None:
        return set()
    offset_type = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(texts.buffers()[1], dtype=offset_type, count=texts.offset + len(texts) + 1)
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[offsets[texts.offset] : offsets[-1]]
    control = data[data < 0x20]  # counted, not sorted: a text of many lines has millions of newlines
    present = {chr(b) for b in np.flatnonzero(np.bincount(control, minlength=0x20))} if len(control) else set()
    return present | {c for c in '"\\' if (data == ord(c)).any()}


def derived_record_ids(first_position: int, count: int) -> pa.Array:
    """Ids from dataset positions (``r`` + 11 digits): a rerun over the same source gives the same ids."""
    positions = pc.cast(pa.array(np.arange(first_position, first_position + count, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise("r", pc.utf8_lpad(positions, 11, "0"), "")


def request_lines(batch: pa.RecordBatch | pa.Table, ids: pa.Array, adapter: ModelAdapter) -> tuple[pa.Array, pa.Array]:
    """(request line or null, rejection reason or null) for every row."""
    errors = adapter.row_errors(batch)
    before, after = adapter.request_frame()
    escaped = adapter.texts(batch, escape=json_escape)  # only the column values are escaped, per row
    lines = pc.binary_join_element_wise(
        '{"recordId":"', json_escape(ids), f'","modelInput":{before}', escaped, f"{after}}}", ""
    )
    return pc.if_else(pc.is_null(errors), lines, pa.scalar(None, pa.string())), errors


def rendered_requests(
    rows: pa.RecordBatch | pa.Table, adapter: ModelAdapter, resend: ModelAdapter | None
) -> tuple[pa.Array, pa.Array]:
    """``request_lines`` of rows, where a row whose ``MAX_TOKENS`` is set takes ``resend``'s body (the same
    request with the larger max_tokens)."""
    ids = rows.column(RECORD_ID)
    lines, errors = request_lines(rows, ids, adapter)
    if resend is None or MAX_TOKENS not in rows.column_names or rows.column(MAX_TOKENS).null_count == len(rows):
        return lines, errors
    raised = pc.is_valid(rows.column(MAX_TOKENS))
    resent, resent_errors = request_lines(rows, ids, resend)
    return _combined(pc.if_else(raised, resent, lines)), _combined(pc.if_else(raised, resent_errors, errors))


def _combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def request_chars(table: pa.Table, adapter: ModelAdapter) -> int:
    """Characters of prompt text the rows with a request send (their text and the system prompt)."""
    errors = table.column(INPUT_ERROR) if INPUT_ERROR in table.column_names else None
    sent = table if errors is None or errors.null_count == len(errors) else table.filter(pc.is_null(errors))
    if sent.num_rows == 0:
        return 0
    return adapter.text_chars(sent) + sent.num_rows * len(adapter.prompt.system or "")


def prepare_batch(sb: SourceBatch, position: int, adapter: ModelAdapter, id_column: str | None) -> PreparedBatch:
    """Render and validate each row's request; invalid rows keep their reason instead of a request."""
    batch = sb.batch
    n = batch.num_rows
    if id_column:
        ids = pc.cast(batch.column(id_column), pa.string())
        _check_user_ids(ids, sb, id_column)
    else:
        ids = derived_record_ids(position, n)
    try:
        requests, errors = request_lines(batch, ids, adapter)
    except ValueError as e:  # a column the prompt cannot render
        raise SourceError(f"{sb.file.uri}: {e}") from None

    table = pa.Table.from_batches([batch])
    if RECORD_ID in table.column_names:
        if id_column != RECORD_ID:
            raise SourceError(
                f"{sb.file.uri}: the source has a column named {RECORD_ID!r}; "
                f"set source.id_column: {RECORD_ID} to use it as the record id"
            )
        table = table.drop_columns([RECORD_ID])
    table = (
        table.append_column(RECORD_ID, ids)
        .append_column(
            SOURCE_FILE, pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([sb.file.uri]))
        )
        .append_column(SOURCE_ROW, pa.array(np.arange(sb.first_row, sb.first_row + n), pa.int64()))
        .append_column(REQUEST, requests)
        .append_column(INPUT_ERROR, errors)
    )
    valid = pc.is_valid(requests).to_numpy(zero_copy_only=False)
    line_bytes = pc.fill_null(pc.add(pc.binary_length(requests), 1), 0).to_numpy(zero_copy_only=False)
    return PreparedBatch(table, valid.astype(np.int64), line_bytes.astype(np.int64))


def _check_user_ids(ids: pa.Array, sb: SourceBatch, id_column: str) -> None:
    empty = pc.or_kleene(pc.is_null(ids), pc.equal(pc.utf8_length(ids), 0))
    too_long = pc.greater(pc.utf8_length(ids), MAX_RECORD_ID)
    for mask, problem in ((empty, "is empty"), (too_long, f"is longer than {MAX_RECORD_ID} characters")):
        bad = np.nonzero(pc.fill_null(mask, True).to_numpy(zero_copy_only=False))[0]
        if bad.size:
            row = int(bad[0])
            raise SourceError(f"{sb.file.uri}: row {sb.first_row + row}: id column {id_column!r} {problem}")


def line_buffers(requests: pa.Array | pa.ChunkedArray) -> list[pa.Buffer]:
    """The non-null request lines, each followed by a newline, as zero-copy Arrow buffers (JSONL)."""
    chunks = requests.chunks if isinstance(requests, pa.ChunkedArray) else [requests]
    pieces = []
    for chunk in chunks:
        lines = pc.binary_join_element_wise(pc.drop_null(chunk), "\n", "")  # fresh array: offset 0
        if len(lines):
            offset_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
            offsets = np.frombuffer(lines.buffers()[1], dtype=offset_type, count=len(lines) + 1)
            pieces.append(lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])))
    return pieces


@dataclass
class RecordIdIndex:
    """Checks record-id uniqueness over the whole dataset with 8 bytes per row, not the ids."""

    _hashes: list[np.ndarray] = field(default_factory=list)

    def add(self, ids: pa.Array) -> None:
        self._hashes.append(
            np.fromiter(
                (
                    int.from_bytes(hashlib.blake2b(x.encode(), digest_size=8).digest(), "little")
                    for x in ids.to_pylist()
                ),
                dtype=np.uint64,
                count=len(ids),
            )
        )

    def duplicate_positions(self) -> np.ndarray:
        """Dataset positions (0-based) of rows whose id hash was seen before."""
        if not self._hashes:
            return np.empty(0, dtype=np.int64)
        hashes = np.concatenate(self._hashes)
        order = np.argsort(hashes, kind="stable")
        sorted_h = hashes[order]
        dup = np.nonzero(sorted_h[1:] == sorted_h[:-1])[0] + 1
        return np.sort(order[dup])
