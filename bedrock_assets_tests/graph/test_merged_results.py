"""The left join: every input row exactly once, in input order, with its output or its error; a shard is reported
merged only once its file is stored."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bedrock_assets.bedrock.error_classes import INVALID_INPUT, NOT_RETURNED
from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.graph import merged_results
from bedrock_assets.graph.batch_job_outputs import finished_attempts
from bedrock_assets.graph.merged_results import merge_shard
from bedrock_assets.output_lines import OutputParser
from bedrock_assets_tests.helpers import (
    NO_RECOURSE,
    claude,
    err_line,
    input_rows,
    job,
    ledger_of,
    ok_line,
    parse,
    pipeline_dict,
    run,
    step_of,
)


def test_merge_of_out_of_order_duplicated_and_missing_lines():
    rows = input_rows(6, rejected={5})
    lines = [
        ok_line("id3", "three"),
        err_line("id1"),
        ok_line("id0", "zero"),
        ok_line("id3", "dup"),
        ok_line("stranger", "x"),
    ]  # id2, id4 never returned; id5 rejected before submission
    parser, outputs = parse(lines, ["id0", "id1", "id2", "id3", "id4"])
    assert (parser.stats.duplicates, parser.stats.unknown_ids, parser.stats.succeeded, parser.stats.errored) == (
        1,
        1,
        2,
        1,
    )

    merged = merge_shard(rows, outputs, job("s00000", JobStatus.PARTIALLY_COMPLETED))
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
    merged = merge_shard(rows, empty, job("s00001", JobStatus.EXPIRED, "job did not start in time"))
    assert merged.column("error_code").to_pylist() == ["JobExpired"] * 3
    assert merged.column("error_message")[0].as_py() == "batch job Expired: job did not start in time"


def test_submit_failed_shard_rows_say_so_with_bedrocks_message():
    merged = merge_shard(
        input_rows(2),
        pa.Table.from_batches([OutputParser(claude()).parse_chunk(b"")]),
        job("s00002", JobStatus.SUBMIT_FAILED, "ValidationException: bad input", arn=None),
    )
    assert merged.column("error_code").to_pylist() == ["JobSubmitFailed"] * 2
    assert merged.column("error_message")[0].as_py() == "batch job SubmitFailed: ValidationException: bad input"


def test_the_error_rate_check_warns_only_on_rows_no_later_retry_round_sends_again():
    from bedrock_assets.graph.merged_results import MergedShard, error_rate_check

    def merged(shard: str, succeeded: int, retriable: int) -> MergedShard:
        return MergedShard(
            shard, job(shard, JobStatus.COMPLETED), 100, 100, 100, succeeded, {"429": 100 - succeeded}, retriable, ""
        )

    throttled = merged("s00000", 90, 10)  # 10 throttled rows: round 1 sends them again
    assert error_rate_check([throttled], 0.0, max_rounds=2).passed
    assert not error_rate_check([throttled], 0.0, max_rounds=0).passed  # no round will
    last = merged("r2-00000", 90, 10)  # a shard of the last round: what failed stays failed
    check = error_rate_check([last], 0.05, max_rounds=2)
    assert not check.passed and "r2-00000 10.0%" in check.description


def test_a_shard_is_reported_merged_only_once_its_file_is_stored_and_a_failed_put_stops_there(
    make_pipelines, instance, s3, bucket, monkeypatch
):
    defs, (spec,) = make_pipelines([pipeline_dict("stored", bucket, retry=NO_RECOURSE)], rows=600)
    run(defs, spec, instance)
    step, ledger = step_of(spec, defs), ledger_of(defs)
    attempts = list(finished_attempts(ledger, spec.name, ["s00000", "s00001", "s00002"]))
    put, stored = merged_results.upload_file, []

    def upload(s3_access, path, loc, keep=False):
        put(s3_access, path, loc, keep)
        stored.append(loc.key.split("/")[-1])

    monkeypatch.setattr(merged_results, "upload_file", upload)
    for merged in merged_results.merge_each(step, attempts):
        assert f"{merged.shard}.parquet" in stored and merged.every_row_once  # its file is in S3 when reported
        body = s3.get_object(Bucket=bucket, Key=step.layout.merged(merged.shard).key)["Body"].read()
        assert pq.read_table(pa.BufferReader(body)).num_rows == merged.rows == 200

    def failing(s3_access, path, loc, keep=False):
        if loc.key.endswith("s00001.parquet"):
            raise RuntimeError(f"PUT {loc.key} failed")
        put(s3_access, path, loc, keep)

    monkeypatch.setattr(merged_results, "upload_file", failing)
    reported = []
    with pytest.raises(RuntimeError, match="s00001.parquet failed"):
        for merged in merged_results.merge_each(step, attempts):
            reported.append(merged.shard)
    assert reported == ["s00000"]  # s00001 is never reported merged, nor s00002 after it
