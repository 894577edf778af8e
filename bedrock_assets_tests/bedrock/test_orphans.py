"""Jobs named like a pipeline's that its ledger does not hold: found, priced at risk, shown, and stopped."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import named_by
from bedrock_assets.bedrock.orphans import find_orphans
from bedrock_assets.bedrock.resource import JobSummary
from bedrock_assets.keys import PipelineKeys
from bedrock_assets_tests.helpers import foreign_job, job, ledger_of, pipeline_dict, run, tick


def summary(name: str, status: str = "InProgress", total: int = 1000, processed: int = 400) -> JobSummary:
    counts = {"totalRecordCount": total, "processedRecordCount": processed}
    return JobSummary(
        f"arn:aws:bedrock:us-east-1:1:model-invocation-job/{name}", name, "m", JobStatus(status), counts=counts
    )


def test_only_names_of_this_pipelines_shape_count_and_the_ledger_holds_its_own():
    assert named_by("cot", "cot-s00000-0123456789") and named_by("cot", "cot-r1-00002-abcdef0123-a2")
    assert not named_by("cot", "cot-review-s00000-0123456789")  # another pipeline whose prefix starts alike
    assert not named_by("cot", "cot-s00000-0123456789-extra") and not named_by("cot", "my-cot-s00000-0123456789")
    ours = replace(job("s00000", JobStatus.IN_PROGRESS, arn="arn:aws:bedrock:us-east-1:1:model-invocation-job/a"),
                   job_name="cot-s00000-aaaaaaaaaa", worst_usd=2.0, records=1000)  # fmt: skip
    queued = replace(job("s00001", JobStatus.QUEUED, arn=None), job_name="cot-s00001-bbbbbbbbbb")
    jobs = [
        summary("a"),  # not named like ours
        replace(summary("x"), job_arn=ours.job_arn, job_name=ours.job_name),  # the ledger's own
        summary("cot-s00001-bbbbbbbbbb"),  # a queued shard's create whose answer was lost: adopted, not orphaned
        summary("cot-s00007-cccccccccc"),
        summary("cot-s00008-dddddddddd", status="Completed", processed=1000),
    ]
    orphans = find_orphans("cot", jobs, [ours, queued])
    assert [o.job_name for o in orphans] == ["cot-s00007-cccccccccc", "cot-s00008-dddddddddd"]
    running, ended = orphans
    assert running.running and running.at_risk_usd == 600 * 2.0 / 1000  # its 600 unprocessed records at worst
    assert "up to $1.20 at risk" in running.line() and not ended.running and "at risk" not in ended.line()


def test_the_completion_sensor_reports_an_orphan_on_the_status_observation(make_pipelines, instance, stack, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("lost", bucket)], rows=300)
    run(defs, spec, instance)
    stack.configure(time_scale=60)  # the orphan stays Submitted
    arn = foreign_job(bucket, "lost-s00042-0123456789")
    result = tick(defs, spec, instance)
    (seen,) = [e for e in result.asset_events or [] if e.asset_key == PipelineKeys("lost").merged_dataset]
    assert seen.metadata["orphan_jobs"] == dg.MetadataValue.int(1)
    assert seen.metadata["orphans"].value.records[0].data["job_arn"] == arn
    assert arn not in {a.job_arn for a in ledger_of(defs).attempts_of("lost")}  # reported, not adopted
