"""batch_jobs: a stopped pipeline records its shards without a job as Stopped instead of submitting them."""

from __future__ import annotations

from bedrock_assets.keys import PipelineKeys
from bedrock_assets.runner import execute_stage
from bedrock_assets_tests.helpers import ledger_of, pipeline_dict, run


def test_after_a_stop_shards_without_a_job_are_recorded_stopped_not_submitted(make_pipelines, instance, stack, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("halted", bucket)], rows=300)
    execute_stage(defs, instance, spec.name, "prepare")
    stop = defs.resolve_job_def(PipelineKeys(spec.name).job("stop"))
    assert stop.execute_in_process(instance=instance).success  # before any job: only the stop is recorded
    jobs_before = stack.emulator.job_count()
    execute_stage(defs, instance, spec.name, "submit", ["s00000", "s00001"])
    summary = run(defs, spec, instance)
    assert (
        stack.emulator.job_count() == jobs_before
    )  # nothing was submitted after the stop, by the stage or by automation
    assert summary.errors == {"JobStopped": 300} and summary.job_statuses == {"Stopped": 2}
    assert "the pipeline was stopped" in ledger_of(defs).latest("halted", "s00001").message
