"""The __stop job: every job in flight stopped, queued shards dequeued, no further retry round, every row once."""

from __future__ import annotations

import time

import pyarrow.compute as pc

from bedrock_assets.keys import PipelineKeys
from bedrock_assets.runner import execute_stage
from bedrock_assets_tests.helpers import pipeline_dict, read_parquet, run


def ours(bedrock) -> list[dict]:
    """The stop test's jobs (the local stack serves every test of the session)."""
    return bedrock.list_model_invocation_jobs(nameContains="stopping-")["invocationJobSummaries"]


def test_stop_leaves_no_job_in_flight_and_every_row_once(make_pipelines, instance, stack, s3, bucket, tmp_path):
    defs, (spec,) = make_pipelines([pipeline_dict("stopping", bucket)], rows=450)
    stack.configure(time_scale=3)  # each job phase lasts 3 s: time to stop them while InProgress
    execute_stage(defs, instance, spec.name, "prepare")
    execute_stage(defs, instance, spec.name, "submit", ["s00000", "s00001", "s00002"])
    bedrock = stack.client("bedrock")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the jobs are running
        statuses = {j["status"] for j in ours(bedrock)}
        if statuses == {"InProgress"}:
            break
        time.sleep(0.1)
    stop = defs.resolve_job_def(PipelineKeys(spec.name).job("stop"))
    result = stop.execute_in_process(instance=instance)
    assert result.success and "stopped 3 job(s)" in result.output_for_node("stopping__stop_jobs")

    creates_before = stack.emulator.job_count()
    summary = run(defs, spec, instance)
    assert stack.emulator.job_count() == creates_before  # a stopped job is never resubmitted, and no retry round starts
    in_flight = [j for j in ours(bedrock) if j["status"] != "Stopped"]
    assert in_flight == [] and summary.job_statuses == {"Stopped": 3}
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert merged.num_rows == 450 and pc.count_distinct(merged.column("record_id")).as_py() == 450
    codes = merged.column("error_code").to_pylist()
    assert set(codes) <= {None, "JobStopped"} and "JobStopped" in codes
    salvaged = codes.count(None)
    assert salvaged > 0  # what the stopped jobs produced before the stop is kept
