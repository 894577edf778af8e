"""The canary: real records on demand before the first batch job, once per request settings, billed apart."""

from __future__ import annotations

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.naming import CANARY_SHARD
from bedrock_assets.components.bedrock_batch_pipeline import BedrockBatchPipeline
from bedrock_assets.record_cache import RecordCache
from bedrock_assets_tests.helpers import ledger_of, pipeline_defs, pipeline_dict, run, step_of


def test_the_canary_runs_once_per_request_settings_and_is_billed_in_its_own_lane(
    make_pipelines, instance, stack, bucket, tmp_path
):
    defs, (spec,) = make_pipelines([pipeline_dict("sung", bucket, canary={"records": 3})], rows=300)
    calls = stack.emulator.runtime_calls()["InvokeModel"]
    summary = run(defs, spec, instance)
    (canary,) = ledger_of(defs).attempts("sung", CANARY_SHARD)
    assert canary.status is JobStatus.COMPLETED and canary.counts.succeeded == 3 and canary.input_tokens
    assert stack.emulator.runtime_calls()["InvokeModel"] - calls == 3
    assert summary.report is not None
    lanes = {r["lane"]: int(r["records"]) for r in summary.report.cost_by_lane}
    assert lanes == {"batch": 300, "canary (default)": 3}
    assert summary.bedrock_calls.calls["InvokeModel"] == 3  # counted with the run's Bedrock calls
    assert summary.shards == 2  # the canary is billed, never a shard
    cache = RecordCache(step_of(spec, defs))
    (segment,) = [n for n in cache.segment_names() if n.startswith(f"{CANARY_SHARD}-a1-")]
    assert cache.index([segment]).size == 3  # its answers are cached: a later cut never pays for them

    run(defs, spec, instance)  # the same settings: no canary again
    assert len(ledger_of(defs).attempts("sung", CANARY_SHARD)) == 1

    changed = pipeline_dict("sung", bucket, prompt={"template": "Briefly: {task}\n\n{source}"}, canary={"records": 3})
    spec2 = BedrockBatchPipeline.from_attributes(changed, tmp_path)
    defs2 = pipeline_defs([spec2], defs.resources["bedrock_ledger"].table_name)  # the same ledger
    run(defs2, spec2, instance)  # new bodies: the canary vouches for them first
    assert [a.status for a in ledger_of(defs).attempts("sung", CANARY_SHARD)] == [JobStatus.COMPLETED] * 2


def test_canary_records_0_turns_it_off(make_pipelines, instance, stack, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("quiet", bucket, canary={"records": 0})], rows=300)
    assert defs is not None and spec.canary.records == 0
    calls = stack.emulator.runtime_calls()["InvokeModel"]
    run(defs, spec, instance)
    assert ledger_of(defs).attempts("quiet", CANARY_SHARD) == []
    assert stack.emulator.runtime_calls()["InvokeModel"] == calls
