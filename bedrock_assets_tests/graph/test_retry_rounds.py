"""Recourse on the local stack: retry rounds for failed records, the job resubmission policy, and stop."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bedrock_assets.bedrock.error_classes import retriable_mask
from bedrock_assets.graph import jsonl_shards
from bedrock_assets.layout import PipelineLayout
from bedrock_assets_tests.helpers import CLAUDE_45, NO_RECOURSE, ledger_of, pipeline_dict, read_parquet, run


def creates(stack) -> int:
    return stack.emulator.job_count()


def copied_only(monkeypatch) -> list[str]:
    """Forbid rendering a shard's input again: every input must be its staged lines copied (the shards each
    copy was made for, in order, are returned)."""
    monkeypatch.setattr(jsonl_shards, "render_shard_input", lambda step, info: pytest.fail(f"{info.key} rendered"))
    copied: list[str] = []
    copy = jsonl_shards.copy_staged_input

    def counted(step, info, settings):
        done = copy(step, info, settings)
        if done is not None:
            copied.append(info.key)
        return done

    monkeypatch.setattr(jsonl_shards, "copy_staged_input", counted)
    return copied


def test_record_errors_are_retried_in_rounds_until_none_is_retriable(
    make_pipelines, instance, stack, s3, bucket, tmp_path, monkeypatch
):
    stack.configure(record_error_rate=0.05, drop_rate=0.02)
    defs, (spec,) = make_pipelines([pipeline_dict("rounds", bucket, shards={"max_records": 1000})], rows=3000)
    copied = copied_only(monkeypatch)  # a round's lines are rendered once, when it is cut
    summary = run(defs, spec, instance)

    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert merged.num_rows == 3000 and pc.count_distinct(merged.column("record_id")).as_py() == 3000
    assert merged.column("source_row").to_pylist() == list(range(3000))
    left = retriable_mask(merged.column("error_code"), merged.column("error_message"))
    assert pc.sum(left).as_py() in (0, None)  # nothing retriable is left
    assert summary.failed == 0

    latest = ledger_of(defs).latest_by_shard("rounds")
    layout = PipelineLayout.for_uri(spec.output_uri)
    by_round: dict[int, list[str]] = {}
    for key in latest:
        by_round.setdefault(0 if key.startswith("s") else int(key[1 : key.index("-")]), []).append(key)
    assert len(by_round[0]) == 3 and 1 in by_round
    assert sorted(copied) == sorted(latest)  # every shard of every round, batch or on demand, was a copy

    def sent(keys) -> set[str]:
        return {
            i
            for k in keys
            for i in read_parquet(s3, layout.shard_rows(k).uri, tmp_path).column("record_id").to_pylist()
        }

    def retriable(keys) -> set[str]:
        found = set()
        for k in keys:
            part = read_parquet(s3, layout.merged(k).uri, tmp_path)
            mask = retriable_mask(part.column("error_code"), part.column("error_message"))
            found |= set(part.column("record_id").filter(mask).to_pylist())
        return found

    # each round sent exactly the retriable rows of the round before: nothing that had succeeded is paid again
    for n in sorted(by_round)[1:]:
        assert sent(by_round[n]) == retriable(by_round[n - 1])
    first_retriable = retriable(by_round[0])
    assert len(first_retriable) >= 100  # enough for a batch job: round 1 is a batch job, not on demand
    assert not latest["r1-00000"].job_arn.startswith("on-demand/")
    assert summary.retried == summary.resent_in_batch_jobs == len(first_retriable)
    later = sum(len(sent(by_round[n])) for n in sorted(by_round)[2:])
    assert summary.resent_on_demand == later and summary.retry_rounds == len(by_round) - 1
    # the rows show how many rounds each took and which job gave the final outcome
    attempts = merged.column("attempts").to_pylist()
    assert attempts.count(1) == 3000 - len(first_retriable) and max(attempts) >= 2
    retried = merged.filter(pc.greater(merged.column("attempts"), 1))
    first_jobs = {latest[k].job_arn for k in by_round[0]}
    assert not first_jobs & set(retried.column("job_arn").to_pylist())
    assert set(retried.column("shard").to_pylist()) <= set(by_round[0])  # lineage keeps the first-pass shard


def test_a_remainder_below_the_minimum_goes_on_demand_and_nothing_else(
    make_pipelines, instance, stack, s3, bucket, tmp_path, monkeypatch
):
    stack.configure(record_error_rate=0.05)
    defs, (spec,) = make_pipelines([pipeline_dict("remainder", bucket)], rows=300)
    jobs_before = creates(stack)
    copied = copied_only(monkeypatch)
    summary = run(defs, spec, instance)

    latest = ledger_of(defs).latest_by_shard("remainder")
    retry_keys = [k for k in latest if k.startswith("r")]
    assert retry_keys == ["r1-00000"] and latest["r1-00000"].job_arn.startswith("on-demand/")
    assert sorted(copied) == sorted(latest)  # the on-demand remainder's input too
    assert creates(stack) - jobs_before == 2  # the two first-pass jobs; the remainder made no batch job
    assert summary.failed == 0
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    retried = merged.filter(pc.equal(merged.column("attempts"), 2))
    assert 0 < retried.num_rows == latest["r1-00000"].records < 100
    assert set(retried.column("job_arn").to_pylist()) == {latest["r1-00000"].job_arn}


def test_small_remainder_leave_keeps_the_rows_failed(make_pipelines, instance, stack, s3, bucket):
    stack.configure(record_error_rate=0.05)
    defs, (spec,) = make_pipelines(
        [pipeline_dict("leave", bucket, retry={"small_remainder": "leave"}, max_error_rate=0.2)], rows=300
    )
    summary = run(defs, spec, instance)
    assert 0 < summary.failed < 100 and set(summary.errors) <= {"429", "500"}
    assert all(k.startswith("s") for k in ledger_of(defs).latest_by_shard("leave"))


def test_an_expired_job_is_resubmitted_by_policy_then_its_rows_retried(
    make_pipelines, instance, stack, s3, bucket, tmp_path
):
    stack.configure(expire_jobs_matching="-s00001-")  # every attempt of shard 1 expires; retry shards do not
    defs, (spec,) = make_pipelines([pipeline_dict("expiring", bucket)], rows=300)
    summary = run(defs, spec, instance)

    ledger = ledger_of(defs)
    assert ledger.latest("expiring", "s00001").attempt == 2  # resubmitted once (max_job_attempts 2), not more
    assert ledger.latest("expiring", "s00000").attempt == 1
    assert summary.failed == 0 and summary.rows == 300
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    shard1 = merged.filter(pc.equal(merged.column("shard"), "s00001"))
    assert set(shard1.column("attempts").to_pylist()) == {2}
    assert set(shard1.column("job_arn").to_pylist()) == {ledger.latest("expiring", "r1-00000").job_arn}


def test_a_400_class_error_stays_failed_after_one_attempt(make_pipelines, instance, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([pipeline_dict("toolong", bucket)], rows=300)
    source = read_parquet(s3, f"s3://{bucket}/raw/sample.parquet", tmp_path, "source.parquet")
    texts = source.column("source").to_pylist()
    texts[7] = "word " * 200_000  # ~1 MB: beyond the model's context window, Bedrock answers 400
    source = source.set_column(source.schema.get_field_index("source"), "source", pa.array(texts))
    pq.write_table(source, tmp_path / "source.parquet")
    s3.upload_file(str(tmp_path / "source.parquet"), bucket, "raw/sample.parquet")

    summary = run(defs, spec, instance)
    assert summary.errors == {"400": 1} and summary.retry_rounds == 0  # final: no retry round for it
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    row = merged.filter(pc.equal(merged.column("source_row"), 7))
    assert row.column("attempts").to_pylist() == [1]
    assert "Input is too long" in row.column("error_message")[0].as_py()


# ---- structured answers cut off at max_tokens ------------------------------------------------------

LABELS = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["math", "logic", "language", "other"]},
        "difficulty": {"type": "integer"},
        "keywords": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["category", "difficulty"],
}


def labels(name: str, bucket: str, max_tokens: int, **retry) -> dict:
    """Each test names its own pipeline: the local stack is shared, and job names come from the pipeline."""
    return pipeline_dict(
        name,
        bucket,
        model=CLAUDE_45,
        output_schema=LABELS,
        inference={"max_tokens": max_tokens},
        retry={**NO_RECOURSE, "max_rounds": 2, **retry},
    )


def sent_max_tokens(s3, bucket: str, pipeline: str, shard: str) -> set[int]:
    key = f"out/{pipeline.replace('_', '-')}/shards/{shard}/input.jsonl"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return {json.loads(line)["modelInput"]["max_tokens"] for line in body.splitlines()}


def test_a_structured_answer_cut_off_is_not_resent_with_the_same_body(
    make_pipelines, instance, stack, s3, bucket, tmp_path
):
    defs, (spec,) = make_pipelines([labels("cut", bucket, max_tokens=8)], rows=150)
    before = stack.emulator.job_count()
    summary = run(defs, spec, instance)
    assert summary.errors == {"TruncatedStructuredOutput": 150} and summary.retry_rounds == 0
    assert stack.emulator.job_count() - before == 1  # the first pass only: paying again would give the same cut
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert set(merged.column("stop_reason").to_pylist()) == {None}
    assert "raise inference.max_tokens, or set retry.truncated_max_tokens" in merged.column("error_message")[0].as_py()


def test_with_truncated_max_tokens_a_cut_off_answer_is_sent_once_more_with_the_larger_limit(
    make_pipelines, instance, stack, s3, bucket, tmp_path
):
    defs, (spec,) = make_pipelines([labels("cut_raised", bucket, max_tokens=8, truncated_max_tokens=96)], rows=150)
    summary = run(defs, spec, instance)
    assert (summary.failed, summary.retry_rounds, summary.resent_in_batch_jobs) == (0, 1, 150)
    assert sent_max_tokens(s3, bucket, "cut_raised", "s00000") == {8}
    assert sent_max_tokens(s3, bucket, "cut_raised", "r1-00000") == {96}
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert set(merged.column("attempts").to_pylist()) == {2} and None not in merged.column("difficulty").to_pylist()
    retry_job = ledger_of(defs).latest("cut_raised", "r1-00000")
    assert retry_job.worst_usd > ledger_of(defs).latest("cut_raised", "s00000").worst_usd  # priced at the raised limit


def test_a_cut_off_answer_is_resent_once_only(make_pipelines, instance, stack, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([labels("cut_once", bucket, max_tokens=4, truncated_max_tokens=8)], rows=150)
    before = stack.emulator.job_count()
    summary = run(defs, spec, instance)
    assert summary.errors == {"TruncatedStructuredOutput": 150} and summary.retry_rounds == 1
    assert stack.emulator.job_count() - before == 2  # first pass and one round with max_tokens 8, not a third job
    assert set(read_parquet(s3, summary.merged_uri, tmp_path).column("attempts").to_pylist()) == {2}


def test_a_round_no_cut_within_the_quotas_can_hold_sends_its_tail_on_demand(make_pipelines, instance, stack, bucket):
    # 125 expired records of s00001 plus s00000's record errors: more than one job holds, fewer than two
    stack.configure(record_error_rate=0.05, expire_jobs_matching="-s00001-")
    shards = {"max_records": 125, "min_records": 100}
    retry = {"max_job_attempts": 1}
    defs, (spec,) = make_pipelines([pipeline_dict("uncut", bucket, shards=shards, retry=retry)], rows=250)
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (250, 250)
    latest = ledger_of(defs).latest_by_shard("uncut")
    assert latest["r1-00000"].records == 125 and not latest["r1-00000"].job_arn.startswith("on-demand/")
    assert latest["r1-00001"].job_arn.startswith("on-demand/") and 0 < latest["r1-00001"].records < 100
    assert summary.resent_on_demand >= latest["r1-00001"].records


def test_resubmitting_a_shard_whose_records_a_round_already_retried_is_refused(make_pipelines, instance, stack, bucket):
    import pytest

    from bedrock_assets.runner import PipelineRunError, execute_stage

    stack.configure(fail_jobs_matching="-s00001-")  # "Internal error": its records go to round 1, and succeed
    defs, (spec,) = make_pipelines([pipeline_dict("noresend", bucket, retry={"max_job_attempts": 1})], rows=300)
    assert run(defs, spec, instance).succeeded == 300
    stack.configure(fail_jobs_matching=None)
    jobs = creates(stack)
    config = {"ops": {"noresend__batch_jobs": {"config": {"resubmit_failed": True}}}}
    with pytest.raises(PipelineRunError, match=r"the retriable records of s00001 were sent again in retry round 1"):
        execute_stage(defs, instance, spec.name, "submit", ["s00001"], run_config=config)
    assert creates(stack) == jobs  # nothing paid for answers the round gave
