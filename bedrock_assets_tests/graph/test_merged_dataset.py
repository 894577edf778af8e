"""The final dataset: each record once, in input order, with its outcome from the last round that holds it."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from bedrock_assets.graph.merged_dataset import final_outcomes, with_final_outcomes
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.runner import execute_stage
from bedrock_assets_tests.helpers import pipeline_dict


def merged(ids, shard, job, outputs, codes) -> pa.Table:
    return pa.table(
        {
            "source": [f"text of {i}" for i in ids],
            "record_id": ids,
            "shard": [shard] * len(ids),
            "job_arn": [job] * len(ids),
            "output_text": outputs,
            "error_code": codes,
        }
    )


def test_the_last_round_holding_a_record_gives_its_outcome_and_attempts():
    first = merged(["a", "b", "c", "d"], "s00000", "job0", ["A", None, None, None], [None, "429", "500", "400"])
    round1 = merged(["b", "c"], "r1-00000", "job1", ["B", None], [None, "429"])
    round2 = merged(["c"], "r2-00000", "on-demand/job2", ["C"], [None])

    final = with_final_outcomes(first, final_outcomes([round1, round2]))

    assert final.column("record_id").to_pylist() == ["a", "b", "c", "d"]  # input order, once each
    assert final.column("output_text").to_pylist() == ["A", "B", "C", None]
    assert final.column("error_code").to_pylist() == [None, None, None, "400"]  # a final error is not retried
    assert final.column("job_arn").to_pylist() == ["job0", "job1", "on-demand/job2", "job0"]
    assert final.column("attempts").to_pylist() == [1, 2, 3, 1]
    assert final.column("shard").to_pylist() == ["s00000"] * 4  # lineage: the first-pass shard stays
    assert final.column("source").to_pylist() == [f"text of {i}" for i in "abcd"]


def test_without_retries_every_record_took_one_attempt():
    first = merged(["a", "b"], "s00000", "job0", ["A", None], [None, "400"])
    assert with_final_outcomes(first, None).column("attempts").to_pylist() == [1, 1]


def test_merged_dataset_waits_for_every_shard_with_a_warning_not_a_failure(make_pipelines, instance, bucket):
    defs, (spec,) = make_pipelines([pipeline_dict("early", bucket)], rows=300)
    keys = PipelineKeys("early")
    before_plan = execute_stage(defs, instance, spec.name, "publish")  # "Materialize all" on a fresh pipeline
    (check,) = before_plan.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "the shards are not planned yet" in check.description
    execute_stage(defs, instance, spec.name, "prepare")
    execute_stage(defs, instance, spec.name, "submit", instance.get_dynamic_partitions("early__shards"))
    (check,) = execute_stage(defs, instance, spec.name, "publish").get_asset_check_evaluations()
    assert check.metadata["shards_not_merged"].value == 2
    assert instance.get_latest_materialization_event(keys.merged_dataset) is None
