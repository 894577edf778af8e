"""The names Dagster knows a pipeline's parts by, and the tags that make one run cover a range of shards."""

from __future__ import annotations

from bedrock_assets.keys import STAGES, PipelineKeys, partition_tags, stage_tags


def test_every_node_is_in_one_stage_and_every_stage_has_its_job():
    nodes = [n for group in STAGES.values() for n in group]
    graph = ["raw_dataset", "jsonl_shards", "batch_jobs", "batch_job_outputs", "merged_results", "retry_rounds"]
    assert sorted(nodes) == sorted([*graph, "merged_dataset"]) and len(nodes) == len(set(nodes))
    keys = PipelineKeys("cot")
    assert [keys.job(s) for s in STAGES] == [f"cot__{s}" for s in ("prepare", "submit", "merge", "retry", "publish")]
    assert keys.partitions_def.name == keys.partitions == keys.shard_group == "cot__shards"
    assert keys.merged_dataset.to_user_string() == "cot/merged_dataset"


def test_a_range_of_shards_is_tagged_as_a_partition_range_and_one_shard_is_not():
    assert stage_tags("cot", "merge", ["s00000", "s00001"]) == {
        "bedrock_assets/pipeline": "cot",
        "bedrock_assets/stage": "merge",
        "bedrock_assets/shards": "s00000..s00001",
    }
    assert partition_tags(["s00000"]) == {}
    assert partition_tags(["s00000", "s00001", "s00002"]) == {
        "dagster/asset_partition_range_start": "s00000",
        "dagster/asset_partition_range_end": "s00002",
    }
