"""batch_job_outputs: a job that ended without output fails its check with its own message, in Dagster's views."""

from __future__ import annotations

import dagster as dg
import pytest

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.graph.batch_job_outputs import JobOutputs, finished_attempts, jobs_check
from bedrock_assets.keys import PipelineKeys
from bedrock_assets_tests.helpers import NO_RECOURSE, job, pipeline_dict, run


def latest_check(instance, key: dg.AssetKey, name: str):
    (record,) = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(key, name), limit=1)
    return record.event.dagster_event.event_specific_data


def test_a_failed_job_shows_as_failed_checks_with_its_message(make_pipelines, instance, stack, bucket):
    stack.configure(fail_jobs_matching="visible-s00001-")
    defs, (spec,) = make_pipelines([pipeline_dict("visible", bucket, retry=NO_RECOURSE)], rows=300)
    run(defs, spec, instance)
    keys = PipelineKeys("visible")
    job = latest_check(instance, keys.batch_job_outputs, "job_succeeded")
    assert not job.passed and job.severity == dg.AssetCheckSeverity.ERROR
    assert job.description.startswith("s00001: job Failed (") and "emulated" in job.description
    complete = latest_check(instance, keys.merged_dataset, "complete")
    assert not complete.passed and complete.severity == dg.AssetCheckSeverity.ERROR
    assert "100 of 300 rows failed (33.3%, max_error_rate 0.0%): JobFailed 100" in complete.description
    (seen,) = instance.fetch_observations(
        dg.AssetRecordsFilter(keys.batch_jobs, asset_partitions=["s00001"]), limit=1
    ).records  # the status observation of the failed job says why
    assert seen.asset_observation.metadata["status"].value == "Failed"
    assert "emulated fault" in seen.asset_observation.metadata["message"].value
    rate = latest_check(instance, keys.merged_results, "error_rate")
    assert not rate.passed and rate.severity == dg.AssetCheckSeverity.WARN and "s00001 100.0%" in rate.description


def outputs(shard: str, status: JobStatus, message: str | None = None) -> JobOutputs:
    return JobOutputs(shard, "arn:j", status, message, "s3://b/o", {}, 10, 8, 2, 0, 1, 1, {"429": 2})


def test_the_check_fails_for_a_job_without_output_with_its_message_and_passes_otherwise():
    passed = jobs_check([outputs("s00000", JobStatus.COMPLETED), outputs("s00001", JobStatus.PARTIALLY_COMPLETED)])
    assert passed.passed and passed.description is None
    failed = [outputs(f"s{i:05d}", JobStatus.FAILED, "internal error") for i in range(7)]
    check = jobs_check([outputs("s00009", JobStatus.COMPLETED), *failed])
    assert not check.passed and check.severity is dg.AssetCheckSeverity.ERROR
    assert check.description.startswith("s00000: job Failed (internal error); s00001: job Failed")
    assert check.description.endswith("; and 2 more") and check.metadata["jobs_checked"].value == 8
    assert outputs("s00000", JobStatus.COMPLETED).not_returned == 0


def test_outputs_are_read_only_once_the_job_reached_a_terminal_state():
    class Ledger:
        def __init__(self, *attempts):
            self.attempts, self.asked = {a.shard: a for a in attempts}, []

        def latest_of(self, pipeline, shards):
            self.asked.append(list(shards))
            return {s: self.attempts[s] for s in shards if s in self.attempts}

    with pytest.raises(dg.Failure, match="shard s00000: job is InProgress; outputs are read once"):
        list(finished_attempts(Ledger(job("s00000", JobStatus.IN_PROGRESS)), "p", ["s00000"]))
    with pytest.raises(dg.Failure, match="job is not submitted"):
        list(finished_attempts(Ledger(), "p", ["s00000"]))
    three = Ledger(
        job("s00000", JobStatus.EXPIRED), job("s00001", JobStatus.COMPLETED), job("s00002", JobStatus.FAILED)
    )
    done = finished_attempts(three, "p", ["s00000", "s00001", "s00002"])
    assert [a.status for a in done] == [JobStatus.EXPIRED, JobStatus.COMPLETED, JobStatus.FAILED]
    assert three.asked == [["s00000", "s00001", "s00002"]]  # the run's shards asked for once
    running = finished_attempts(
        Ledger(job("s00000", JobStatus.COMPLETED), job("s00001", JobStatus.SCHEDULED)), "p", ["s00000", "s00001"]
    )
    assert next(running).shard == "s00000"  # the shards before a running one are handed out first
    with pytest.raises(dg.Failure, match="shard s00001: job is Scheduled"):
        next(running)


def test_text_answers_cut_off_stay_successes_and_warn_above_the_threshold(make_pipelines, instance, bucket):
    spec_attrs = pipeline_dict("short", bucket, inference={"max_tokens": 4}, retry=NO_RECOURSE)
    defs, (spec,) = make_pipelines([spec_attrs], rows=150)
    summary = run(defs, spec, instance)
    assert (summary.rows, summary.failed) == (150, 0)  # a text cut off is still the model's answer
    check = latest_check(instance, dg.AssetKey(["short", "batch_job_outputs"]), "answers_complete")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("1 shard(s) with more than 1.0% of answers cut off at max_tokens: s00000 ")
    assert check.metadata["truncated_answers"].value > 140


def test_a_healthy_run_has_complete_answers(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("healthy", bucket, retry=NO_RECOURSE)], rows=150)
    run(defs, spec, instance)
    check = latest_check(instance, dg.AssetKey(["healthy", "batch_job_outputs"]), "answers_complete")
    assert check.passed and check.metadata["truncated_answers"].value == 0


def tamper(s3, prefix_uri: str) -> None:
    """Spoil a job's output as a faulty writer might: a line cut short, a line that is not JSON, a repeat
    that differs from its first line, and an answer to a recordId nobody sent."""
    import json

    from bedrock_assets.uris import parse_s3_uri

    loc = parse_s3_uri(prefix_uri)
    (key,) = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=loc.bucket, Prefix=loc.key)["Contents"]
        if o["Key"].endswith(".jsonl.out")
    ]
    lines = s3.get_object(Bucket=loc.bucket, Key=key)["Body"].read().splitlines()
    first = json.loads(lines[0])
    changed = json.dumps({**first, "modelOutput": {**first["modelOutput"], "content": [{"type": "text", "text": "?"}]}})
    stranger = json.dumps({**first, "recordId": "not-ours"})
    spoiled = [lines[0], lines[1], lines[2][:50], b"{not json", *lines[3:], changed.encode(), stranger.encode()]
    s3.put_object(Bucket=loc.bucket, Key=key, Body=b"\n".join(spoiled) + b"\n")


def test_odd_output_lines_are_counted_and_named_and_the_pipeline_still_finishes(make_pipelines, instance, s3, bucket):
    from bedrock_assets.layout import PipelineLayout
    from bedrock_assets.runner import execute_stage
    from bedrock_assets_tests.helpers import ledger_of, tick

    defs, (spec,) = make_pipelines([pipeline_dict("oddout", bucket)], rows=300)
    execute_stage(defs, instance, spec.name, "prepare")
    shards = instance.get_dynamic_partitions("oddout__shards")
    execute_stage(defs, instance, spec.name, "submit", shards)
    tick(defs, spec, instance)  # the jobs are seen Completed; their outputs are written
    attempt = ledger_of(defs).latest("oddout", "s00000")
    tamper(s3, PipelineLayout.for_uri(spec.output_uri).job_output("s00000").join(attempt.job_id).uri)

    summary = run(defs, spec, instance)
    assert (summary.rows, summary.succeeded) == (300, 300)  # the record whose line was cut short: retried
    assert summary.retried == 1
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(PipelineKeys("oddout").batch_job_outputs, asset_partitions=["s00000"]), limit=1
    ).records
    meta = record.asset_materialization.metadata
    assert (meta["unreadable_lines"].value, meta["conflicting_duplicates"].value) == (2, 1)
    assert meta["unknown_record_ids"].value == 1
    assert "line 3: b'{" in meta["oddities"].value and "line 4: b'{not json'" not in meta["oddities"].value


def test_finished_jobs_that_cost_more_than_the_budget_are_named_with_the_overrun():
    from types import SimpleNamespace

    from bedrock_assets.bedrock.prices import price_for
    from bedrock_assets.graph.batch_job_outputs import budget_overrun
    from bedrock_assets_tests.helpers import CUSTOM_PRICE, priced_attempt

    attempts = [priced_attempt("s00000", "arn:a", (1_000_000, 0)), priced_attempt("s00001", "arn:b", (500_000, 0))]
    ledger = SimpleNamespace(attempts_of=lambda _: attempts)

    def step(budget):
        return SimpleNamespace(
            name="p", spec=SimpleNamespace(budget_usd=budget), price=price_for("my.model-v1", CUSTOM_PRICE)
        )

    assert budget_overrun(step(2.0), ledger) is None and budget_overrun(step(None), ledger) is None
    assert budget_overrun(step(1.0), ledger) == (
        "p: the finished jobs cost $1.50, over budget_usd $1.00 by $0.50 (by the tokens Bedrock reports); shards "
        "that do not fit what is left wait"
    )
