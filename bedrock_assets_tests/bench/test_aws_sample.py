"""bench.aws_sample's own decisions: the sample's events, its ``.jsonl.out`` made from ours', the pairs' report.

None of these needs the sample's code or its virtualenv; the child protocol runs a stand-in sample.
"""

from __future__ import annotations

import json
import os
import string
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import aws_sample as a
from bench.stages import BUCKET, SHARD_RECORDS, TEMPLATE, ShardFacts, source_key

JOB = {
    "model_id": "anthropic.claude-3-5-haiku-20241022-v1:0",
    "job_name": "aws-sample-60000-part-0001-ab12cd",
    "input_parquet_path": "s3://bench/batch_inputs_parquet/aws-sample-60000/0001.snappy.parquet",
    "s3_uri_input": "s3://bench/batch_inputs_json/aws-sample-60000/0001.jsonl",
    "s3_uri_output": "s3://bench/batch_outputs_json/aws-sample-60000/0001/",
}


def test_preprocess_event_is_the_sample_job_input_for_ours_source_and_shards() -> None:
    event = asdict(a.PreprocessEvent.for_rows(220_000))
    assert event == {
        "s3_uri": f"s3://{BUCKET}/{source_key(220_000)}",
        "job_name_prefix": "aws-sample-220000",
        "model_id": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "prompt_id": a.BENCH_PROMPT_ID,
        "max_records_per_job": SHARD_RECORDS,
    }
    assert event["s3_uri"].split(".")[-1] == "parquet"  # how the sample picks its reader
    assert "dataset_id" not in event  # an S3 dataset: no Hugging Face download
    assert asdict(a.PreprocessEvent.for_rows(10, "question_answering"))["prompt_id"] == "question_answering"


def test_bench_template_takes_only_source_columns() -> None:
    fields = {name for _, name, _, _ in string.Formatter().parse(TEMPLATE) if name}
    assert fields <= {"source", "target", "rationale", "task"}
    row = {"source": "Q?", "target": "A", "rationale": "R", "task": "t", "record_id": "u"}
    assert TEMPLATE.format(**row) == "Task category: t\n\nQ?"  # the sample calls .format(**row)


def test_job_configs_parse_from_the_preprocess_result() -> None:
    jobs = a.JobConfig.parse_result({"jobs": [JOB, JOB | {"job_name": "x"}]})
    assert [j.job_name for j in jobs] == [JOB["job_name"], "x"]
    assert asdict(jobs[0]) == JOB


def test_task_item_points_postprocess_at_where_the_outputs_are_put() -> None:
    job = a.JobConfig(**JOB)
    item = a.TaskItem.finished(job, 1)
    event = asdict(item)
    assert set(event) == {
        "job_arn",
        "model_id",
        "input_parquet_path",
        "s3_uri_output",
        "status",
        "error_message",
        "task_token",
    }
    assert event["error_message"] is None and event["status"] == "Completed"  # so the sample does postprocess
    assert event["input_parquet_path"] == JOB["input_parquet_path"]
    # the sample lists os.path.join(s3_uri_output, <last segment of the ARN>) for suffix .jsonl.out
    listed = os.path.join(event["s3_uri_output"], event["job_arn"].split("/")[-1])
    assert item.output_uri(job).startswith(listed + "/")
    assert item.output_uri(job) == "s3://bench/batch_outputs_json/aws-sample-60000/0001/sample000001/0001.jsonl.out"
    ids = {a.job_id(i) for i in range(20)}
    assert len(ids) == 20 and all(len(i) == 12 and i.isalnum() and i.islower() for i in ids)
    assert a.split_uri(item.output_uri(job)) == (
        "bench",
        "batch_outputs_json/aws-sample-60000/0001/sample000001/0001.jsonl.out",
    )


def sample_line(record_id: str, text: str) -> bytes:
    """A request line as the sample writes one (``json.dumps`` of the record)."""
    record = {"recordId": record_id, "modelInput": {"anthropic_version": "bedrock-2023-05-31", "messages": [text]}}
    return json.dumps(record).encode()


def ours_line(position: int, tail: dict) -> bytes:
    head = json.dumps({"recordId": f"r{position:011d}", "modelInput": {"system": "S"}}, separators=(",", ":"))
    return head[:-1].encode() + b"," + json.dumps(tail, separators=(",", ":")).encode()[1:] + b"\n"


def test_splice_gives_the_sample_ours_answers_for_the_same_rows_in_ours_order() -> None:
    first = 100
    requests = [sample_line(f"uuid-{k}", f"prompt {k} é") for k in range(4)]
    answer = {"modelOutput": {"content": [{"type": "text", "text": 'say "error": no,"error":{'}]}}
    error = {"error": {"errorCode": 400, "errorMessage": "Malformed input request"}}
    ours = [ours_line(102, answer), ours_line(100, error), b"\n", ours_line(103, answer)]  # 101: rejected by ours
    out = a.splice_outputs(requests, first, ours)
    assert out.lines == 4 and out.unmatched == 1
    assert out.body.endswith(b"}\n") and b"}\n{" in out.body  # the delimiter the sample splits on
    records = [json.loads(line) for line in out.body.decode().splitlines()]
    assert [r["recordId"] for r in records] == ["uuid-2", "uuid-0", "uuid-3", "uuid-1"]
    assert records[0]["modelOutput"] == answer["modelOutput"] and "error" not in records[0]
    assert records[1]["error"] == error["error"] and "modelOutput" not in records[1]
    assert records[3]["error"]["errorCode"] == 400 and "no line in ours" in records[3]["error"]["errorMessage"]
    assert all(r["modelInput"]["messages"] == [f"prompt {k} é"] for r, k in zip(records, [2, 0, 3, 1]))


def test_splice_refuses_a_record_outside_the_job() -> None:
    with pytest.raises(ValueError, match="outside"):
        a.splice_outputs([sample_line("u", "p")], 0, [ours_line(1, {"error": {"errorCode": 400}})])
    with pytest.raises(ValueError, match="no modelOutput"):
        a.output_tail(b'{"recordId":"r00000000000","modelInput":{}}')


def test_cuts_must_match_ours_shards() -> None:
    shards = [ShardFacts(f"s{i:05d}", n, n, "d") for i, n in enumerate([50_000, 50_000, 20_000])]
    assert a.check_cuts([50_000, 50_000, 20_000], shards) == [0, 50_000, 100_000]
    with pytest.raises(RuntimeError, match="rows"):
        a.check_cuts([60_000, 60_000], shards)


def m(side: str, stage: str, seconds: float, cpu: float) -> a.Measure:
    return a.Measure(side, stage, seconds, cpu, seconds + 3, cpu + 2, 0.5)


def pair(index: int, sample_prep: float, ours_prep: float, post: float = 4.0, merge: float = 2.0) -> a.Pair:
    return a.Pair(
        index,
        m("sample", "prep", sample_prep, sample_prep / 2),
        m("ours", "prep", ours_prep, ours_prep),
        m("sample", "post", post, post),
        m("ours", "post", merge, merge * 2),
    )


def test_pairs_alternate_who_goes_first() -> None:
    assert [a.sample_first(i) for i in range(4)] == [True, False, True, False]
    calls: list[str] = []
    s = lambda: calls.append("sample") or m("sample", "prep", 1, 1)  # noqa: E731
    o = lambda: calls.append("ours") or m("ours", "prep", 2, 2)  # noqa: E731
    assert [x.side for x in a.in_order(True, s, o)] == ["sample", "ours"]
    assert [x.side for x in a.in_order(False, s, o)] == ["sample", "ours"]  # always (sample's, ours')
    assert calls == ["sample", "ours", "ours", "sample"]
    assert [pair(i, 1, 1).first for i in range(2)] == ["sample", "ours"]


def test_ratios_are_sample_over_ours_and_the_median_is_of_the_per_pair_ratios() -> None:
    p = pair(0, 6.0, 3.0)
    assert p.ratios() == {"prep_s": 2.0, "prep_cpu": 1.0, "post_s": 2.0, "post_cpu": 1.0}
    pairs = [pair(0, 2.0, 1.0), pair(1, 10.0, 10.0), pair(2, 9.0, 3.0)]
    med = a.medians(pairs)
    assert med[0] == 9.0 and med[2] == 3.0  # sample / ours prep seconds
    assert med[8] == 2.0  # median of 2, 1, 3: not 9 / 3
    lines = a.markdown(pairs)
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + 3 + 1  # header, the pairs, the median
    assert table[1].startswith("| 1 | sample | 2.00 / 1.00 | 1.00 / 1.00 |")
    assert table[2].startswith("| 2 | ours |")
    assert table[-1].startswith(
        "| median |  | 9.00 / 4.50 | 3.00 / 3.00 | 4.00 / 4.00 | 2.00 / 4.00 | 2.00× / 1.00× | 2.00× / 1.00× |"
    )
    assert any(line.startswith("- sample_prep: 12.00 s / 6.50 s CPU") for line in lines)


FAKE_PREPROCESS = """
import time
import prompt_templates as pt
t = time.process_time()
while time.process_time() - t < 0.4:  # import-time work (the sample builds a boto3 client): not measured
    pass
def lambda_handler(event, context):
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass
    return {"jobs": [{"template": pt.prompt_id_to_template[event["prompt_id"]], "event": event}]}
"""


@pytest.mark.subprocess
def test_sample_child_times_the_handler_not_its_imports(tmp_path: Path) -> None:
    sample = tmp_path / "lambda"
    sample.mkdir()
    (sample / "preprocess.py").write_text(textwrap.dedent(FAKE_PREPROCESS))
    (sample / "prompt_templates.py").write_text("prompt_id_to_template = {'joke_about_topic': 'Tell me {topic}'}\n")
    args = SimpleNamespace(work_dir=tmp_path, sample_dir=sample, sample_python=Path(sys.executable), rows=10)
    stack = SimpleNamespace(env=lambda: dict(os.environ), cpu_seconds=lambda: 1.0)
    run = a.Harness(args, stack).sample("preprocess", [asdict(a.PreprocessEvent.for_rows(10))])
    assert run.side == "sample" and run.stage == "prep"
    assert 0.2 <= run.cpu_s < 0.4 and run.seconds >= 0.2  # the handler's 0.2 s, not the import's 0.4 s
    assert run.proc_cpu_s >= 0.6 and run.proc_wall_s > run.seconds  # the whole process: imports too
    assert run.stack_cpu_s == 0.0
    (job,) = run.result["results"][0]["jobs"]
    assert job["template"] == TEMPLATE  # ours' template registered for the sample
    assert job["event"]["max_records_per_job"] == SHARD_RECORDS
    assert (tmp_path / "logs").is_dir()


def test_parse_args_wants_the_sample_checkout(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        a.parse_args(["--sample-dir", str(tmp_path), "--sample-python", sys.executable])
    (tmp_path / "preprocess.py").write_text("")
    (tmp_path / "postprocess.py").write_text("")
    args = a.parse_args(["--sample-dir", str(tmp_path), "--sample-python", sys.executable, "--work-dir", "w"])
    assert args.sample_dir == tmp_path.resolve() and args.rows == 220_000 and args.pairs == 6
    assert args.prompt_id == a.BENCH_PROMPT_ID and args.work_dir.is_absolute()
