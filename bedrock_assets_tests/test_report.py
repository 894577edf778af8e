"""The pipeline report: written as merged_dataset's metadata and read back from Dagster, figure for figure."""

from __future__ import annotations

import dagster as dg

from bedrock_assets.report import Cost, MergedDataset, PipelineReport

DATASET = MergedDataset(
    rows=300, succeeded=297, errors={"429": 2, "400": 1}, shards=2, uri="s3://b/out/merged_dataset/data.parquet",
    retried=5, retry_rounds=1, resent_in_batch_jobs=0, resent_on_demand=5,
)  # fmt: skip


def through_dagster(report: PipelineReport) -> PipelineReport:
    """The report as a reader finds it: materialized in an instance, then read from its latest event."""
    key = dg.AssetKey(["p", "merged_dataset"])
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=report.metadata()))
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        return PipelineReport.from_metadata(event.asset_materialization.metadata)


def test_a_priced_report_round_trips_with_its_tables():
    report = PipelineReport(
        dataset=DATASET,
        input_tokens=12_000,
        output_tokens=3_400,
        jobs_digest="abc123",
        cost=Cost(0.0123, 0.0101, 0.0022),
        planned_expected=0.01,
        planned_worst=0.04,
        cost_by_round=[{"round": 0, "cost": "$0.0101"}, {"round": 1, "cost": "$0.0022"}],
        job_statuses={"Completed": 2, "PartiallyCompleted": 1},
        jobs=[{"shard": "s00000", "status": "Completed", "job_arn": "arn:j", "cost_usd": "$0.0101"}],
    )
    read = through_dagster(report)
    assert read == report
    assert (read.dataset.failed, round(read.dataset.error_rate, 3)) == (3, 0.01)


def test_an_unpriced_report_says_cost_unknown_and_reads_back_as_no_cost():
    report = PipelineReport(DATASET, 1, 2, "d", Cost(None))
    meta = report.metadata()
    assert "cost_usd" not in meta and meta["cost"].startswith("cost unknown")
    read = through_dagster(report)
    assert read.cost == Cost(None) and read.planned_expected is None and read == report
