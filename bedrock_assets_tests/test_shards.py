"""The shard catalogue: keys, recorded shards, the shard index and retry state, the shard parts."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bedrock_assets.records import RECORD_ID, REQUEST
from bedrock_assets.sharding import Shard
from bedrock_assets.shards import (
    LINES_DIGEST,
    LINES_SETTINGS,
    MissingShardIndex,
    RetryRound,
    RetryState,
    ShardIndex,
    ShardInfo,
    ShardParts,
    load_retry_state,
    load_shard_index,
    load_shard_index_if_any,
    mark_stopped,
    retry_key,
    round_of,
    save_retry_state,
    save_shard_index,
    select_shards,
    shard_digest,
    span,
)
from bedrock_assets.sources import SourceError
from bedrock_assets.storage import local_copy
from bedrock_assets_tests.helpers import one_spec, pipeline_dict, step_of


def test_keys_name_their_round():
    assert retry_key(1, 0) == "r1-00000" and retry_key(2, 13) == "r2-00013"
    assert [round_of(k) for k in ("s00000", "r1-00000", "r2-00013", "r10-00001")] == [0, 1, 2, 10]


def test_a_run_of_shards_is_named_by_its_ends():
    assert (span([]), span(["s00003"]), span(["s00000", "s00001", "s00002"])) == ("", "s00003", "s00000..s00002")


def test_a_recorded_shard_loads_without_the_fields_an_older_index_had():
    recorded = {"key": "s00000", "rows": 10, "records": 9, "bytes": 900, "digest": "d", "first_position": 0}
    assert ShardInfo.from_dict(recorded) == ShardInfo("s00000", 10, 9, 900, "d")


def test_the_index_names_the_shards_it_no_longer_has():
    index = ShardIndex(["f"], 20, 0, [ShardInfo("s00000", 10, 10, 1, "a"), ShardInfo("s00001", 10, 10, 1, "b")])
    assert [s.key for s in index.select(["s00001"])] == ["s00001"]
    with pytest.raises(SourceError, match=r"\['s00002'\] are not in the current shard plan; re-materialize"):
        index.select(["s00000", "s00002"])
    moved = ShardIndex(["f"], 20, 0, [ShardInfo("s00000", 10, 10, 1, "a"), ShardInfo("s00001", 10, 10, 1, "c")])
    assert index.same_shards(index) and not index.same_shards(moved)


def rows(n: int) -> pa.Table:
    ids = [f"r{i:011d}" for i in range(n)]
    requests = [f'{{"recordId":"{i}"}}' for i in ids]
    return pa.table(
        {"task": ["t"] * n, "source": [f"question {i}" for i in range(n)], RECORD_ID: ids, REQUEST: requests}
    )


def test_shard_parts_and_staged_lines_are_in_s3_when_the_writer_closes_and_a_plan_writes_nothing(s3, bucket):
    step = step_of(one_spec(pipeline_dict("parts", bucket)))
    with ShardParts(step, write=False) as plan:
        described = plan.add("s00000", Shard(rows(5), 5, 120))
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="out/parts/canonical/")
    with ShardParts(step) as parts:
        for i in range(3):
            parts.add(f"s{i:05d}", Shard(rows(5 + i), 5 + i, 120))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/parts/canonical/")["Contents"]]
    assert keys == [f"out/parts/canonical/s{i:05d}.{kind}" for i in range(3) for kind in ("jsonl", "parquet")]
    assert [s.rows for s in parts.shards] == [5, 6, 7] and parts.shards[0] == described
    assert described.digest == shard_digest(rows(5))  # the plan's digest is the staged lines' own
    with local_copy(step.s3, step.layout.shard_rows("s00002")) as path:
        assert REQUEST not in pq.read_schema(path).names  # the part holds the rows, the lines are staged apart
    staged = s3.get_object(Bucket=bucket, Key=step.layout.shard_lines("s00002").key)
    body = staged["Body"].read()
    assert body == b"".join(f'{{"recordId":"r{i:011d}"}}\n'.encode() for i in range(7))
    assert staged["Metadata"] == {
        LINES_DIGEST: hashlib.sha256(body).hexdigest(),
        LINES_SETTINGS: step.spec.settings_digest(),  # what they were rendered from
    }
    assert staged["Metadata"][LINES_DIGEST] == parts.shards[2].digest
    assert staged["ContentLength"] == len(body)


def test_the_index_and_the_retry_state_round_trip_and_a_missing_index_says_what_to_run(s3, bucket):
    step = step_of(one_spec(pipeline_dict("catalogue", bucket)))
    with pytest.raises(MissingShardIndex, match="materialize catalogue/raw_dataset first"):
        load_shard_index(step)
    assert load_shard_index_if_any(step) is None and load_retry_state(step) == RetryState()
    index = ShardIndex(["s3://x/a.parquet"], 10, 1, [ShardInfo("s00000", 10, 9, 900, "d" * 64, 40)])
    save_shard_index(step, index)
    assert load_shard_index(step) == index
    retry = RetryRound(1, "basis", 3, True, [ShardInfo("r1-00000", 3, 3, 300, "e" * 64, on_demand=True)])
    save_retry_state(step, RetryState([retry]))
    assert [s.key for s in select_shards(step, ["r1-00000", "s00000"])] == ["r1-00000", "s00000"]
    with pytest.raises(SourceError, match=r"retry shard r1-00001 is not in the current retry rounds \(s3://"):
        select_shards(step, ["r1-00001"])
    mark_stopped(step)
    stopped = load_retry_state(step)
    assert stopped.rounds == [retry] and stopped.stopped_at is not None
    mark_stopped(step)
    assert load_retry_state(step).stopped_at == stopped.stopped_at  # the first stop is the one recorded
