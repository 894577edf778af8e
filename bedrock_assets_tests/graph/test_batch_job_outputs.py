"""batch_job_outputs: a job that ended without output fails its check with its own message, in Dagster's views."""

from __future__ import annotations

import dagster as dg
import pytest

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.graph.batch_job_outputs import JobOutputs, finished_attempt, jobs_check
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
        def __init__(self, attempt):
            self.attempt = attempt

        def latest(self, pipeline, shard):
            return self.attempt

    with pytest.raises(dg.Failure, match="shard s00000: job is InProgress; outputs are read once"):
        finished_attempt(Ledger(job("s00000", JobStatus.IN_PROGRESS)), "p", "s00000")
    with pytest.raises(dg.Failure, match="job is not submitted"):
        finished_attempt(Ledger(None), "p", "s00000")
    assert finished_attempt(Ledger(job("s00000", JobStatus.EXPIRED)), "p", "s00000").status is JobStatus.EXPIRED


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
