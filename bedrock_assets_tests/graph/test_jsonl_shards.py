"""jsonl_shards: an input file outside the model's batch quotas is named with what it breaks; inputs upload behind the rendering."""

from __future__ import annotations

import threading

import pytest

from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.graph import jsonl_shards
from bedrock_assets.graph.jsonl_shards import ShardInput
from bedrock_assets.graph.raw_dataset import prepare_dataset
from bedrock_assets.sample.seed import seed_sample
from bedrock_assets_tests.helpers import one_spec, pipeline_dict, step_of


def test_an_input_outside_the_quotas_says_which_limit_it_breaks():
    quotas = BatchQuotas(
        min_records_per_job=100, max_records_per_file=500, max_records_per_job=400, max_file_bytes=10_000
    )
    assert ShardInput("s00000", 400, 10_000, "s3://b/i").violation(quotas) is None
    assert ShardInput("s00000", 99, 10, "s3://b/i").violation(quotas) == "99 records, outside 100-400"
    assert ShardInput("s00000", 401, 10, "s3://b/i").violation(quotas) == "401 records, outside 100-400"
    assert ShardInput("s00000", 100, 10_001, "s3://b/i").violation(quotas) == "10001 bytes, over 10000"


def test_the_next_shard_renders_while_the_last_one_uploads_and_every_input_lands(s3, bucket, tmp_path, monkeypatch):
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=600)
    step = step_of(one_spec(pipeline_dict("behind", bucket)))
    shards = prepare_dataset(step).shards
    rendering = {info.key: threading.Event() for info in shards}
    render, upload = jsonl_shards.render_shard_input, jsonl_shards.upload_fileobj

    def rendered(step, info):
        rendering[info.key].set()
        return render(step, info)

    def uploaded(s3_access, body, size, loc):
        shard = loc.key.split("/")[-2]
        after = [s.key for s in shards][[s.key for s in shards].index(shard) + 1 :]
        if after:  # an upload in sequence would wait here in vain: the next shard renders meanwhile
            assert rendering[after[0]].wait(10), f"{after[0]} did not render while {shard} uploaded"
        return upload(s3_access, body, size, loc)

    monkeypatch.setattr(jsonl_shards, "render_shard_input", rendered)
    monkeypatch.setattr(jsonl_shards, "upload_fileobj", uploaded)
    written = [w for _, w in jsonl_shards.write_shard_inputs(step, shards)]
    assert [w.shard for w in written] == [s.key for s in shards] and len(shards) == 3
    for w, info in zip(written, shards, strict=True):
        body = s3.get_object(Bucket=bucket, Key=step.layout.shard_input(w.shard).key)["Body"].read()
        assert len(body) == w.bytes and body.count(b"\n") == info.records == w.records

    def failing(s3_access, body, size, loc):
        raise RuntimeError(f"PUT {loc.key} failed")

    monkeypatch.setattr(jsonl_shards, "upload_fileobj", failing)
    with pytest.raises(RuntimeError, match="shards/s00000"):  # the first failure surfaces, in order
        list(jsonl_shards.write_shard_inputs(step, shards))
