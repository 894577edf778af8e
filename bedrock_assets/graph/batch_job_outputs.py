"""batch_job_outputs: a finished job's ``.jsonl.out`` lines and manifest, normalized into rows.

Lines are streamed in line-aligned chunks and parsed with Arrow's JSON reader (line by line only
when a chunk has an unexpected shape); the first line per recordId we sent is kept.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, Failure, MetadataValue

from bedrock_assets.bedrock.error_classes import INVALID_STRUCTURED, UNPARSEABLE
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.layout import PipelineLayout
from bedrock_assets.ledger import JobAttempt, JobLedger
from bedrock_assets.metadata import table
from bedrock_assets.models import ModelAdapter
from bedrock_assets.records import INPUT_ERROR, RECORD_ID
from bedrock_assets.storage import iter_line_chunks, list_objects, local_copy, read_bytes, upload_file
from bedrock_assets.structured import OutputSchema
from bedrock_assets.uris import S3Location


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
    error_codes: dict[str, int] = field(default_factory=dict)


class OutputParser:
    """Turns blocks of output lines into Arrow batches; keeps the first line per recordId."""

    def __init__(self, adapter: ModelAdapter, expected_ids: Iterable[str] | None = None) -> None:
        self.adapter = adapter
        self.schema = output_schema(adapter)
        self.expected = pa.array(list(expected_ids), pa.string()) if expected_ids is not None else None
        self.seen = pa.array([], pa.string())  # record ids already taken, in arrival order
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
                return self._parse_arrow(data)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                lines = [line for line in bytes(data).split(b"\n") if line.strip()]
                if lines:
                    self.stats.fallback_chunks += 1  # an unexpected shape in the chunk: the line path names it
                return self.parse_lines(lines, where)
        return self.parse_lines([], where)

    def _parse_arrow(self, data: bytes | memoryview) -> pa.RecordBatch:
        table = pj.read_json(
            pa.BufferReader(pa.py_buffer(data)),  # the chunk itself, not a copy
            read_options=pj.ReadOptions(block_size=2 << 20),
            parse_options=pj.ParseOptions(explicit_schema=self._json_schema, unexpected_field_behavior="ignore"),
        )
        ids = table.column("recordId").combine_chunks()
        if ids.null_count:
            raise pa.ArrowInvalid("a line without recordId")
        model_output = table.column("modelOutput").combine_chunks()
        error = table.column("error").combine_chunks()
        columns = self.adapter.parse_arrow(model_output)
        value_name = self.schema.field(1).name
        has_output = pc.is_valid(model_output)
        unparseable = pc.and_(has_output, pc.is_null(columns[value_name]))
        parsed = pc.and_(has_output, pc.invert(unparseable))
        none = pa.scalar(None, pa.string())
        invalid = pa.nulls(len(ids), pa.string())  # why a parsed answer does not match the output schema
        structured = self.adapter.prompt.structured
        if structured is not None:
            answers, invalid = self._structured_answers(structured, columns)
            invalid = pc.if_else(parsed, invalid, none)
            columns |= structured.columns(answers, pc.and_(parsed, pc.is_null(invalid)))
        ok = pc.and_(parsed, pc.is_null(invalid))
        code = pc.if_else(
            has_output,
            pc.if_else(unparseable, pa.scalar(UNPARSEABLE), pc.if_else(pc.is_valid(invalid), INVALID_STRUCTURED, none)),
            pc.coalesce(pc.cast(pc.struct_field(error, "errorCode"), pa.string()), "Unknown"),
        )
        message = pc.if_else(
            has_output,
            pc.if_else(unparseable, pa.scalar(self._shape_message), invalid),
            pc.coalesce(pc.struct_field(error, "errorMessage"), "no modelOutput and no error in the output line"),
        )

        self.stats.lines += len(ids)
        mask = pa.array(self._keep(ids))
        ok_kept = pc.and_(ok, mask)
        paid = ("input_tokens", "output_tokens")  # an answer that does not match its schema was still paid for
        arrays = [
            ids,
            columns[value_name],
            *(columns[name] for name in self._property_names),
            *(
                pc.if_else(parsed if name in paid else ok, columns[name], pa.scalar(None, columns[name].type))
                for name in ("stop_reason", *paid)
            ),
            code,
            message,
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema).filter(mask)
        succeeded = pc.sum(ok_kept).as_py() or 0
        self.stats.succeeded += succeeded
        self.stats.errored += batch.num_rows - succeeded
        self.stats.input_tokens += pc.sum(batch.column("input_tokens")).as_py() or 0
        self.stats.output_tokens += pc.sum(batch.column("output_tokens")).as_py() or 0
        for item in pc.value_counts(pc.drop_null(batch.column("error_code"))).to_pylist():
            self.stats.error_codes[item["values"]] = self.stats.error_codes.get(item["values"], 0) + item["counts"]
        return batch

    @property
    def _property_names(self) -> list[str]:
        structured = self.adapter.prompt.structured
        return list(structured.properties) if structured else []

    def _structured_answers(self, structured: OutputSchema, columns: dict[str, pa.Array]) -> tuple[pa.Array, pa.Array]:
        """The typed answers and, per row, why the answer does not match (null when it does)."""
        if self.adapter.native_structured:
            answers = columns["structured"]
            return answers, structured.check_struct(answers)
        found = [structured.from_text(t) for t in columns["output_text"].to_pylist()]
        return structured.rows_to_struct([v for v, _ in found]), pa.array([p for _, p in found], pa.string())

    def _keep(self, ids: pa.Array) -> np.ndarray:
        """Which lines to keep: the first line per recordId, for ids we sent; counts the rest."""
        n = len(ids)
        known = pc.is_in(ids, value_set=self.expected) if self.expected is not None else pa.array(np.ones(n, bool))
        seen = pc.is_in(ids, value_set=self.seen)
        if pc.count_distinct(ids).as_py() == n:
            keep = pc.and_(known, pc.invert(seen)).to_numpy(zero_copy_only=False)
            self.stats.duplicates += pc.sum(seen).as_py() or 0
        else:  # repeats inside this chunk: the first occurrence in order wins
            taken = set(self.seen.to_pylist())
            keep = np.zeros(n, dtype=bool)
            for i, (rid, ok) in enumerate(zip(ids.to_pylist(), known.to_pylist())):
                if rid in taken:
                    self.stats.duplicates += 1
                elif ok:
                    taken.add(rid)
                    keep[i] = True
        seen_np = seen.to_numpy(zero_copy_only=False)
        self.stats.unknown_ids += int((~known.to_numpy(zero_copy_only=False) & ~seen_np & ~keep).sum())
        self.seen = pa.concat_arrays([self.seen, ids.filter(pa.array(keep))])
        return keep

    def parse_lines(self, lines: list[bytes], where: str) -> pa.RecordBatch:
        """Line by line: the fallback of ``parse_chunk`` and the reference its Arrow path is held equal to."""
        ids: list[str] = []
        answers: list[Any] = []
        texts: list[str | None] = []
        vectors: list[Any] = []
        stops: list[str | None] = []
        in_tok: list[int | None] = []
        out_tok: list[int | None] = []
        codes: list[str | None] = []
        messages: list[str | None] = []
        dims = self.adapter.embedding_dimensions
        records = []
        for line in lines:
            self.stats.lines += 1
            try:
                record = json.loads(line)
                records.append((record["recordId"], record))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(
                    f"{where}: line {self.stats.lines}: not a Bedrock output record: {line[:120]!r}"
                ) from None
        keep = self._keep(pa.array([rid for rid, _ in records], pa.string()))
        for (rid, record), kept in zip(records, keep):
            if not kept:
                continue
            parsed = None
            code = message = None
            answer = None
            if "modelOutput" in record and record["modelOutput"] is not None:
                try:
                    parsed = self.adapter.parse(record["modelOutput"])
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    code, message = UNPARSEABLE, f"{self._shape_message}: {type(e).__name__}: {e}"
                structured = self.adapter.prompt.structured
                if parsed is not None and structured is not None:
                    if self.adapter.native_structured:
                        answer = parsed.structured
                        problem = (
                            structured.check(answer) if answer is not None else "the model gave no structured answer"
                        )
                    else:
                        answer, problem = structured.from_text(parsed.text)
                    if problem:
                        code, message, answer = INVALID_STRUCTURED, problem, None
            else:
                error = record.get("error") or {}
                code = str(error.get("errorCode", "Unknown"))
                message = str(error.get("errorMessage", "no modelOutput and no error in the output line"))
            ids.append(rid)
            answers.append(answer)
            if parsed is not None and code is None:
                self.stats.succeeded += 1
                self.stats.input_tokens += parsed.input_tokens or 0
                self.stats.output_tokens += parsed.output_tokens or 0
                texts.append(parsed.text)
                vectors.append(parsed.embedding)
                stops.append(parsed.stop_reason)
                in_tok.append(parsed.input_tokens)
                out_tok.append(parsed.output_tokens)
                codes.append(None)
                messages.append(None)
            else:
                self.stats.errored += 1
                self.stats.error_codes[code] = self.stats.error_codes.get(code, 0) + 1
                paid = parsed is not None  # an answer that does not match its schema was still paid for
                self.stats.input_tokens += (parsed.input_tokens or 0) if paid else 0
                self.stats.output_tokens += (parsed.output_tokens or 0) if paid else 0
                texts.append(parsed.text if paid else None)
                vectors.append(None)
                stops.append(None)
                in_tok.append(parsed.input_tokens if paid else None)
                out_tok.append(parsed.output_tokens if paid else None)
                codes.append(code)
                messages.append(message)
        if dims is not None:
            value = _embedding_array(vectors, dims)
        else:
            value = pa.array(texts, pa.string())
        structured = self.adapter.prompt.structured
        properties = structured.rows_to_struct(answers).flatten() if structured else []
        return pa.RecordBatch.from_arrays(
            [
                pa.array(ids, pa.string()),
                value,
                *properties,
                pa.array(stops, pa.string()),
                pa.array(in_tok, pa.int64()),
                pa.array(out_tok, pa.int64()),
                pa.array(codes, pa.string()),
                pa.array(messages, pa.string()),
            ],
            schema=self.schema,
        )


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


def parse_manifest(data: bytes) -> dict[str, int]:
    manifest = json.loads(data)
    return {k: int(v) for k, v in manifest.items() if isinstance(v, (int, float))}


def finished_attempt(ledger: JobLedger, pipeline: str, shard: str) -> JobAttempt:
    """The shard's latest attempt; Failure unless its job has reached a terminal state."""
    attempt = ledger.latest(pipeline, shard)
    if attempt is None or not attempt.status.is_terminal:
        raise Failure(
            f"shard {shard}: job is {attempt.status.value if attempt else 'not submitted'}; outputs are read "
            "once it reaches a terminal state (the completion sensor requests this run)",
            allow_retries=False,
        )
    return attempt


@dataclass(frozen=True)
class JobOutputs:
    """What one finished job returned, as counted while normalizing its output lines."""

    shard: str
    job_arn: str | None
    job_status: JobStatus
    job_message: str | None
    uri: str
    output_files: list[str]
    manifest: dict[str, int]
    records_sent: int
    output_lines: int
    succeeded: int
    errored: int
    duplicate_lines: int
    unknown_record_ids: int
    input_tokens: int
    output_tokens: int
    error_codes: dict[str, int]

    @property
    def not_returned(self) -> int:
        return self.records_sent - self.succeeded - self.errored

    def metadata(self) -> dict[str, Any]:
        return {
            "job_status": self.job_status.value,
            "job_arn": self.job_arn or "",
            **({"job_message": MetadataValue.text(self.job_message)} if self.job_message else {}),
            "records_sent": self.records_sent,
            "succeeded": self.succeeded,
            "errored": self.errored,
            "not_returned": self.not_returned,
            "duplicate_lines": self.duplicate_lines,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error_codes": MetadataValue.json(self.error_codes),
            "manifest": MetadataValue.json(self.manifest),
            "uri": MetadataValue.path(self.uri),
        }


def collect_job_outputs(spec: Any, s3: Any, attempt: JobAttempt) -> JobOutputs:
    """Stream the job's ``*.jsonl.out`` files into ``outputs/<shard>.parquet``; read its manifest."""
    shard = attempt.shard
    layout = PipelineLayout.for_uri(spec.output_uri)
    adapter = spec.adapter()
    manifest: dict[str, int] = {}
    files: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-out-") as tmp:
        with local_copy(s3, layout.shard_rows(shard), keep=True) as rows:  # kept for merged_results' read of the rows
            ids = pq.read_table(rows, columns=[RECORD_ID, INPUT_ERROR])
        sent = ids.filter(pc.is_null(ids.column(INPUT_ERROR))).column(RECORD_ID).to_pylist()
        parser = OutputParser(adapter, expected_ids=sent)
        out_path = Path(tmp) / "outputs.parquet"
        with pq.ParquetWriter(out_path, parser.schema) as writer:
            if attempt.job_id:
                prefix = layout.job_output(shard).join(attempt.job_id)
                for loc, _ in list_objects(s3, S3Location(prefix.bucket, prefix.key + "/")):
                    if loc.key.endswith("manifest.json.out"):
                        manifest = parse_manifest(read_bytes(s3, loc))
                    elif loc.key.endswith(".out"):
                        files.append(loc.uri)
                        for chunk in iter_line_chunks(s3, loc):
                            writer.write_batch(parser.parse_chunk(chunk, where=loc.uri))
        upload_file(s3, out_path, layout.outputs(shard), keep=True)
    stats = parser.stats
    return JobOutputs(
        shard=shard,
        job_arn=attempt.job_arn,
        job_status=attempt.status,
        job_message=attempt.message,
        uri=layout.outputs(shard).uri,
        output_files=files,
        manifest=manifest,
        records_sent=len(sent),
        output_lines=stats.lines,
        succeeded=stats.succeeded,
        errored=stats.errored,
        duplicate_lines=stats.duplicates,
        unknown_record_ids=stats.unknown_ids,
        input_tokens=stats.input_tokens,
        output_tokens=stats.output_tokens,
        error_codes=dict(stats.error_codes),
    )


def jobs_check(results: list[JobOutputs]) -> AssetCheckResult:
    """``job_succeeded``: every job of the run finished with output (Completed or PartiallyCompleted)."""
    failed = [r for r in results if not r.job_status.has_output]
    rows = [{"shard": r.shard, "status": r.job_status.value, "message": r.job_message or ""} for r in failed]
    return AssetCheckResult(
        check_name="job_succeeded",
        passed=not failed,
        severity=AssetCheckSeverity.ERROR,
        description=None
        if not failed
        else "; ".join(
            f"{r.shard}: job {r.job_status.value}" + (f" ({r.job_message})" if r.job_message else "")
            for r in failed[:5]
        )
        + (f"; and {len(failed) - 5} more" if len(failed) > 5 else ""),
        metadata={"jobs_checked": len(results), "failed_jobs": table(rows, ["shard", "status", "message"])},
    )
