"""Per-record preparation: stable record ids and the Bedrock JSONL request line for each row."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from bedrock_assets.models import ModelAdapter
from bedrock_assets.sources import SourceBatch, SourceError

# Internal columns carried with every input row (lineage and request), dropped from user-facing output.
RECORD_ID = "record_id"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
REQUEST = "_request"
INPUT_ERROR = "_input_error"
INTERNAL_COLUMNS = (REQUEST, INPUT_ERROR)
MAX_RECORD_ID = 64


@dataclass
class PreparedBatch:
    """Rows with lineage columns, their request lines, and per-row shard weights."""

    table: pa.Table
    weights: np.ndarray  # 1 for a row sent to Bedrock, 0 for a row rejected before submission
    line_bytes: np.ndarray  # bytes of the JSONL line including its newline; 0 when rejected


def derived_record_id(position: int, body_json: str) -> str:
    """Deterministic id from a row's dataset position and its request: same input, same id."""
    return hashlib.blake2b(f"{position}\x00{body_json}".encode(), digest_size=8).hexdigest()


def request_line(record_id: str, body_json: str) -> str:
    return f'{{"recordId":{json.dumps(record_id)},"modelInput":{body_json}}}'


def prepare_batch(
    sb: SourceBatch, position: int, adapter: ModelAdapter, id_column: str | None
) -> PreparedBatch:
    """Render and validate each row's request; invalid rows keep their reason instead of a request."""
    batch = sb.batch
    columns = adapter.input_columns()
    data = {c: batch.column(c).to_pylist() for c in columns}
    user_ids = batch.column(id_column).cast(pa.string()).to_pylist() if id_column else None
    ids: list[str] = []
    requests: list[str | None] = []
    errors: list[str | None] = []
    for i in range(batch.num_rows):
        row = {c: data[c][i] for c in columns}
        error = None
        body_json = ""
        try:
            body = adapter.build(row)
            adapter.validate(body)
            body_json = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        except (ValueError, KeyError, TypeError) as e:
            error = f"{type(e).__name__}: {e}"
        if user_ids is not None:
            rid = user_ids[i]
            if rid is None or rid == "":
                raise SourceError(f"{sb.file.uri}: row {sb.first_row + i}: id column {id_column!r} is empty")
            if len(rid) > MAX_RECORD_ID:
                raise SourceError(
                    f"{sb.file.uri}: row {sb.first_row + i}: id {rid[:20]!r}... in column {id_column!r} "
                    f"is longer than {MAX_RECORD_ID} characters"
                )
        else:
            rid = derived_record_id(position + i, body_json or json.dumps(row, ensure_ascii=False))
        ids.append(rid)
        requests.append(None if error else request_line(rid, body_json))
        errors.append(error)
    table = pa.Table.from_batches([batch])
    if RECORD_ID in table.column_names:
        if id_column != RECORD_ID:
            raise SourceError(
                f"{sb.file.uri}: the source has a column named {RECORD_ID!r}; "
                f"set source.id_column: {RECORD_ID} to use it as the record id"
            )
        table = table.drop_columns([RECORD_ID])
    table = table.append_column(RECORD_ID, pa.array(ids, pa.string()))
    table = (
        table.append_column(SOURCE_FILE, pa.array([sb.file.uri] * batch.num_rows, pa.string()).dictionary_encode())
        .append_column(SOURCE_ROW, pa.array(np.arange(sb.first_row, sb.first_row + batch.num_rows), pa.int64()))
        .append_column(REQUEST, pa.array(requests, pa.string()))
        .append_column(INPUT_ERROR, pa.array(errors, pa.string()))
    )
    weights = np.fromiter((r is not None for r in requests), dtype=np.int64, count=batch.num_rows)
    line_bytes = np.fromiter(
        (len(r.encode()) + 1 if r is not None else 0 for r in requests), dtype=np.int64, count=batch.num_rows
    )
    return PreparedBatch(table, weights, line_bytes)


@dataclass
class RecordIdIndex:
    """Checks record-id uniqueness over the whole dataset with 8 bytes per row, not the ids."""

    _hashes: list[np.ndarray] = field(default_factory=list)

    def add(self, ids: pa.Array) -> None:
        self._hashes.append(
            np.fromiter(
                (int.from_bytes(hashlib.blake2b(x.encode(), digest_size=8).digest(), "little") for x in ids.to_pylist()),
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
