"""Bedrock's output lines (``.jsonl.out``) normalized into rows: output columns, or an error code and message.

Lines are parsed in line-aligned chunks with Arrow's JSON reader (line by line only when a chunk has
an unexpected shape, and as the reference the Arrow path is held equal to). The rule for repeats:
the first line per recordId we sent is kept; later ones are counted and kept aside (``repeats``), and
once the kept rows are written, those whose outcome differs from the kept one's are counted apart
(``note_conflicts``: ``conflicting_duplicates``, their ids named). Ids we did not
send are counted. A line that is not a whole JSON output record (cut short, not JSON, no recordId)
is counted with its file, line number and first bytes, never fatal: when its recordId can still be
read it is an ``UnparseableOutput`` row, else its record has no line (``RecordNotReturned``); both
are retried. An answer that does not have the family's shape is an ``UnparseableOutput`` row; one
that does not match the pipeline's ``output_schema`` is an ``InvalidStructuredOutput`` row whose
tokens still count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from bedrock_assets.bedrock.error_classes import INVALID_STRUCTURED, TRUNCATED_STRUCTURED, UNPARSEABLE
from bedrock_assets.models import ModelAdapter, ParsedOutput
from bedrock_assets.output_schema import Mechanism, OutputSchema
from bedrock_assets.records import RECORD_ID


def output_schema(adapter: ModelAdapter) -> pa.Schema:
    value = (
        pa.field("embedding", pa.list_(pa.float32(), adapter.embedding_dimensions))
        if adapter.kind == "embedding"
        else pa.field("output_text", pa.string())
    )
    structured = adapter.prompt.structured
    properties = [pa.field(n, structured.arrow_type(n)) for n in structured.properties] if structured else []
    return pa.schema(
        [
            pa.field(RECORD_ID, pa.string()),
            value,
            *properties,
            pa.field("stop_reason", pa.string()),
            pa.field("input_tokens", pa.int64()),
            pa.field("output_tokens", pa.int64()),
            pa.field("error_code", pa.string()),
            pa.field("error_message", pa.string()),
        ]
    )


@dataclass
class OutputStats:
    lines: int = 0
    succeeded: int = 0
    errored: int = 0
    duplicates: int = 0
    unknown_ids: int = 0
    fallback_chunks: int = 0  # chunks the Arrow reader could not take, parsed line by line
    input_tokens: int = 0
    output_tokens: int = 0
    truncated: int = 0  # answers cut off at the token limit (the family's stop reason says so)
    error_codes: dict[str, int] = field(default_factory=dict)
    conflicting_duplicates: int = 0  # repeats whose line differs from the kept one
    conflicting_ids: list[str] = field(default_factory=list)  # the first few of them
    unreadable_lines: int = 0  # not a whole JSON output record
    unreadable: list[str] = field(default_factory=list)  # the first few: file, line number, first bytes

    def note_unreadable(self, where: str, number: int, line: bytes) -> None:
        self.unreadable_lines += 1
        if len(self.unreadable) < SAMPLES:
            self.unreadable.append(f"{where} line {number}: {line[:80]!r}")

    def note_conflict(self, record_id: str) -> None:
        self.conflicting_duplicates += 1
        if len(self.conflicting_ids) < SAMPLES:
            self.conflicting_ids.append(record_id)


SAMPLES = 5  # examples kept of each oddity
# the recordId of a line that is not whole JSON, when it can still be read
_RECORD_ID = re.compile(rb'"recordId"\s*:\s*"([^"\\]+)"')


@dataclass(frozen=True)
class _Verdict:
    """What each line of a chunk is, column-wise."""

    parsed: pa.Array  # the model answered in the family's shape (and was paid for)
    ok: pa.Array  # ... and the answer is a success
    truncated: pa.Array  # ... cut off at the token limit
    code: pa.Array
    message: pa.Array


_CUT_OFF = "the answer was cut off at the token limit before it was a whole JSON object; raise inference.max_tokens, or set retry.truncated_max_tokens to resend it with more (stop_reason "


def _id_array(ids: pa.Array | pa.ChunkedArray | Iterable[str]) -> pa.Array:
    """Record ids as one Arrow string array (an Arrow column as it is, without a Python string per id)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    return ids if isinstance(ids, pa.Array) else pa.array(list(ids), pa.string())


class OutputParser:
    """Turns blocks of output lines into Arrow batches; keeps the first line per recordId."""

    def __init__(self, adapter: ModelAdapter, expected_ids: pa.Array | Iterable[str] | None = None) -> None:
        self.adapter = adapter
        self.schema = output_schema(adapter)
        self.expected = _id_array(expected_ids) if expected_ids is not None else None
        self.seen = pa.array([], pa.string())  # record ids already taken, in arrival order
        self.repeats: list[pa.RecordBatch] = []  # the rows of lines that repeat a kept record (rare)
        self.lines_in: dict[str, int] = {}  # lines read per file, to name a line by its number
        self.stats = OutputStats()
        self._shape_message = f"modelOutput does not have the {adapter.family} shape"
        self._json_schema = pa.schema(
            [
                ("recordId", pa.string()),
                ("modelOutput", adapter.output_type),
                ("error", pa.struct([("errorCode", pa.int64()), ("errorMessage", pa.string())])),
            ]
        )

    def parse_chunk(self, data: bytes | memoryview, where: str = "") -> pa.RecordBatch:
        """Parse a chunk of complete output lines: Arrow's JSON reader, line by line if that fails."""
        if len(data):
            try:
                return self._parse_arrow(data, where)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                self.stats.fallback_chunks += 1  # an unexpected shape in the chunk: the line path names it
        return self.parse_lines(_lines(data), where)

    def _parse_arrow(self, data: bytes | memoryview, where: str) -> pa.RecordBatch:
        table = pj.read_json(
            pa.BufferReader(pa.py_buffer(data)),  # the chunk itself, not a copy
            read_options=pj.ReadOptions(block_size=2 << 20),
            parse_options=pj.ParseOptions(explicit_schema=self._json_schema, unexpected_field_behavior="ignore"),
        )
        ids = table.column("recordId").combine_chunks()
        if ids.null_count or len(ids) != _segments(data) and len(ids) != len(_lines(data)):  # blank lines: count
            raise pa.ArrowInvalid("a line without recordId, or lines the reader did not take one by one")
        model_output = table.column("modelOutput").combine_chunks()
        columns = self.adapter.parse_arrow(model_output)
        verdict = self._verdict(model_output, table.column("error").combine_chunks(), columns)
        self.stats.lines += len(ids)
        self.lines_in[where] = self.lines_in.get(where, 0) + len(ids)
        keep, repeated = self._keep(ids)
        paid = ("input_tokens", "output_tokens")  # an answer that does not match its schema was still paid for
        arrays = [
            ids,
            columns[self._value_name],
            *(columns[name] for name in self._property_names),
            *(
                pc.if_else(
                    verdict.parsed if name in paid else verdict.ok, columns[name], pa.scalar(None, columns[name].type)
                )
                for name in ("stop_reason", *paid)
            ),
            verdict.code,
            verdict.message,
        ]
        every = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        if repeated.any():
            self.repeats.append(every.filter(pa.array(repeated)))
        mask = pa.array(keep)
        batch = every.filter(mask)
        succeeded = pc.sum(pc.and_(verdict.ok, mask)).as_py() or 0
        self.stats.succeeded += succeeded
        self.stats.errored += batch.num_rows - succeeded
        self.stats.truncated += pc.sum(pc.and_(verdict.truncated, mask)).as_py() or 0
        self.stats.input_tokens += pc.sum(batch.column("input_tokens")).as_py() or 0
        self.stats.output_tokens += pc.sum(batch.column("output_tokens")).as_py() or 0
        for item in pc.value_counts(pc.drop_null(batch.column("error_code"))).to_pylist():
            self.stats.error_codes[item["values"]] = self.stats.error_codes.get(item["values"], 0) + item["counts"]
        return batch

    def _verdict(self, model_output: pa.Array, error: pa.Array, columns: dict[str, pa.Array]) -> _Verdict:
        """Per line: parsed, answered, cut off at the token limit, and the error code and message of the others;
        the structured answers' typed columns are added to ``columns``."""
        has_output = pc.is_valid(model_output)
        unparseable = pc.and_(has_output, pc.is_null(columns[self._value_name]))
        parsed = pc.and_(has_output, pc.invert(unparseable))
        reasons = pa.array(sorted(self.adapter.truncated_reasons), pa.string())
        truncated = pc.and_(parsed, pc.fill_null(pc.is_in(columns["stop_reason"], value_set=reasons), False))
        none = pa.scalar(None, pa.string())
        invalid = pa.nulls(len(model_output), pa.string())  # why a parsed answer does not match the output schema
        structured = self.adapter.prompt.structured
        if structured is not None:
            answers, invalid = self._structured_answers(structured, columns)
            invalid = pc.if_else(parsed, invalid, none)
            columns |= structured.columns(answers, pc.and_(parsed, pc.is_null(invalid)))
        cut_off = pc.and_(truncated, pc.is_valid(invalid))  # a structured answer cut off before it was whole
        structured_code = pc.if_else(
            cut_off, TRUNCATED_STRUCTURED, pc.if_else(pc.is_valid(invalid), INVALID_STRUCTURED, none)
        )
        code = pc.if_else(
            has_output,
            pc.if_else(unparseable, pa.scalar(UNPARSEABLE), structured_code),
            pc.coalesce(pc.cast(pc.struct_field(error, "errorCode"), pa.string()), "Unknown"),
        )
        cut_message = pc.binary_join_element_wise(_CUT_OFF, pc.fill_null(columns["stop_reason"], ""), ")", "")
        message = pc.if_else(
            has_output,
            pc.if_else(unparseable, pa.scalar(self._shape_message), pc.if_else(cut_off, cut_message, invalid)),
            pc.coalesce(pc.struct_field(error, "errorMessage"), _NO_OUTPUT),
        )
        return _Verdict(parsed, pc.and_(parsed, pc.is_null(invalid)), truncated, code, message)

    @property
    def _value_name(self) -> str:
        return self.schema.field(1).name

    @property
    def _property_names(self) -> list[str]:
        structured = self.adapter.prompt.structured
        return list(structured.properties) if structured else []

    def _structured_answers(self, structured: OutputSchema, columns: dict[str, pa.Array]) -> tuple[pa.Array, pa.Array]:
        """The typed answers and, per row, why the answer does not match (null when it does): the forced tool's
        input, or the JSON object the answer's text holds."""
        if self.adapter.structured_mechanism is Mechanism.FORCED_TOOL:
            answers = columns["structured"]
            return answers, structured.check_struct(answers)
        found = [structured.from_text(t) for t in columns["output_text"].to_pylist()]
        return structured.rows_to_struct([v for v, _ in found]), pa.array([p for _, p in found], pa.string())

    def _keep(self, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Which lines to keep (the first line per recordId, for ids we sent) and which repeat a kept record;
        counts the repeats and the lines of ids we did not send."""
        n = len(ids)
        known = (
            pc.is_in(ids, value_set=self.expected).to_numpy(zero_copy_only=False)
            if self.expected is not None
            else np.ones(n, bool)
        )
        seen = pc.is_in(ids, value_set=self.seen).to_numpy(zero_copy_only=False)
        if pc.count_distinct(ids).as_py() == n:
            keep, repeated = known & ~seen, seen
        else:  # repeats inside this chunk: the first occurrence in order wins
            keep, repeated = np.zeros(n, dtype=bool), seen.copy()
            first: set[str] = set()
            for i, rid in enumerate(ids.to_pylist()):
                if seen[i] or rid in first:
                    repeated[i] = True
                elif known[i]:
                    first.add(rid)
                    keep[i] = True
        self.stats.duplicates += int(repeated.sum())
        self.stats.unknown_ids += int((~known & ~repeated & ~keep).sum())
        self.seen = pa.concat_arrays([self.seen, ids.filter(pa.array(keep))])
        return keep, repeated

    def note_conflicts(self, kept: pa.Table) -> None:
        """Count the repeats whose outcome differs from their record's kept row (``kept``: the rows returned so
        far, as written) and name the first few; the repeats are then let go."""
        if not self.repeats:
            return
        repeats = pa.Table.from_batches(self.repeats, self.schema)
        index = pc.index_in(repeats.column(RECORD_ID), value_set=kept.column(RECORD_ID))
        firsts = kept.select(self.schema.names).take(index).drop_columns([RECORD_ID]).to_pylist()
        for record_id, repeat, first in zip(
            repeats.column(RECORD_ID).to_pylist(), repeats.drop_columns([RECORD_ID]).to_pylist(), firsts
        ):
            if repeat != first:
                self.stats.note_conflict(record_id)
        self.repeats = []

    def parse_lines(self, lines: list[bytes], where: str) -> pa.RecordBatch:
        """Line by line: the fallback of ``parse_chunk`` and the reference its Arrow path is held equal to."""
        records: list[tuple[str, dict[str, Any] | _LineOutcome]] = []
        for line in lines:
            self.stats.lines += 1
            number = self.lines_in[where] = self.lines_in.get(where, 0) + 1
            try:
                record = json.loads(line)
                records.append((record["recordId"], record))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                self.stats.note_unreadable(where, number, line)
                found = _RECORD_ID.search(line)
                if found is None:
                    continue  # no line for its record: RecordNotReturned at merge
                message = f"line {number} of {where} is not a whole JSON output record: {line[:80]!r}"
                records.append(
                    (found.group(1).decode(errors="replace"), _LineOutcome(None, None, UNPARSEABLE, message))
                )
        keep, repeated = self._keep(pa.array([rid for rid, _ in records], pa.string()))
        kept, repeats = self._outcomes(records, keep), self._outcomes(records, repeated)
        for _, o in kept:
            self._count(o)
        if repeats:
            self.repeats.append(self._batch([rid for rid, _ in repeats], [o for _, o in repeats]))
        return self._batch([rid for rid, _ in kept], [o for _, o in kept])

    def _outcomes(
        self, records: list[tuple[str, dict[str, Any] | _LineOutcome]], chosen: np.ndarray
    ) -> list[tuple[str, _LineOutcome]]:
        return [
            (rid, record if isinstance(record, _LineOutcome) else self._outcome(record))
            for (rid, record), c in zip(records, chosen)
            if c
        ]

    def _outcome(self, record: dict[str, Any]) -> _LineOutcome:
        """One output line's model answer (parsed and checked) or its error."""
        if record.get("modelOutput") is None:
            error = record.get("error") or {}
            code = str(error.get("errorCode", "Unknown"))
            return _LineOutcome(None, None, code, str(error.get("errorMessage", _NO_OUTPUT)))
        try:
            parsed = self.adapter.parse(record["modelOutput"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return _LineOutcome(None, None, UNPARSEABLE, f"{self._shape_message}: {type(e).__name__}: {e}")
        structured = self.adapter.prompt.structured
        if structured is None:
            return _LineOutcome(parsed)
        if self.adapter.structured_mechanism is Mechanism.FORCED_TOOL:
            answer = parsed.structured
            problem = structured.check(answer) if answer is not None else "the model gave no structured answer"
        else:
            answer, problem = structured.from_text(parsed.text)
        if problem and parsed.stop_reason in self.adapter.truncated_reasons:  # the same body is cut off again
            return _LineOutcome(parsed, None, TRUNCATED_STRUCTURED, f"{_CUT_OFF}{parsed.stop_reason})")
        if problem:  # an answer that does not match its schema was still paid for: parsed is kept
            return _LineOutcome(parsed, None, INVALID_STRUCTURED, problem)
        return _LineOutcome(parsed, answer)

    def _count(self, o: _LineOutcome) -> None:
        if o.ok:
            self.stats.succeeded += 1
        else:
            self.stats.errored += 1
            code = o.code or ""
            self.stats.error_codes[code] = self.stats.error_codes.get(code, 0) + 1
        if o.parsed is not None:
            self.stats.truncated += o.parsed.stop_reason in self.adapter.truncated_reasons
            self.stats.input_tokens += o.parsed.input_tokens or 0
            self.stats.output_tokens += o.parsed.output_tokens or 0

    def _batch(self, ids: list[str], outcomes: list[_LineOutcome]) -> pa.RecordBatch:
        paid = [o.parsed for o in outcomes]  # the tokens (and text) of every answer the model gave
        answered = [o.parsed if o.ok else None for o in outcomes]
        dims = self.adapter.embedding_dimensions
        if dims is not None:
            value = _embedding_array([p.embedding if p else None for p in answered], dims)
        else:
            value = pa.array([p.text if p else None for p in paid], pa.string())
        structured = self.adapter.prompt.structured
        properties = structured.rows_to_struct([o.answer for o in outcomes]).flatten() if structured else []
        return pa.RecordBatch.from_arrays(
            [
                pa.array(ids, pa.string()),
                value,
                *properties,
                pa.array([p.stop_reason if p else None for p in answered], pa.string()),
                pa.array([p.input_tokens if p else None for p in paid], pa.int64()),
                pa.array([p.output_tokens if p else None for p in paid], pa.int64()),
                pa.array([o.code for o in outcomes], pa.string()),
                pa.array([o.message for o in outcomes], pa.string()),
            ],
            schema=self.schema,
        )


@dataclass(frozen=True)
class _LineOutcome:
    """One kept output line: the parsed answer (kept when it was paid for), its typed answer, or its error."""

    parsed: ParsedOutput | None
    answer: Any = None
    code: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


_NO_OUTPUT = "no modelOutput and no error in the output line"


def _lines(data: bytes | memoryview) -> list[bytes]:
    """The chunk's lines that are not blank."""
    return [line for line in bytes(data).split(b"\n") if line.strip()]


_COUNT_BLOCK = 1 << 20  # bytes compared at a time: the mask is reused, not a new one the size of the chunk


def _segments(data: bytes | memoryview) -> int:
    """How many lines the (non-empty) chunk has, blank ones included (counted in place, a block at a time)."""
    chars = np.frombuffer(data, np.uint8)
    mask = np.empty(min(len(chars), _COUNT_BLOCK), dtype=bool)
    newlines = 0
    for start in range(0, len(chars), _COUNT_BLOCK):
        block = chars[start : start + _COUNT_BLOCK]
        np.equal(block, 10, out=mask[: len(block)])
        newlines += int(np.count_nonzero(mask[: len(block)]))
    return newlines + (data[-1] != 10)


def _embedding_array(vectors: list[list[float] | None], dims: int) -> pa.Array:
    """Fixed-size float32 lists; one numpy buffer for the block, nulls where a record failed."""
    flat = np.zeros((len(vectors), dims), dtype=np.float32)
    valid = np.zeros(len(vectors), dtype=bool)
    for i, v in enumerate(vectors):
        if v is not None:
            flat[i] = v
            valid[i] = True
    values = pa.array(flat.reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, dims, mask=pa.array(~valid))
