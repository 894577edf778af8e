"""jsonl_shards: an input is the staged lines copied when they are the plan's, else rendered from the rows (each
upload behind the next rendering); an input file outside the model's batch quotas is named with what it breaks."""

from __future__ import annotations

import hashlib
import threading

import pytest

from bedrock_assets.bedrock.quotas import BatchQuotas
from bedrock_assets.graph import jsonl_shards
from bedrock_assets.graph.jsonl_shards import ShardInput
from bedrock_assets.graph.raw_dataset import prepare_dataset
from bedrock_assets.sample.seed import seed_sample
from bedrock_assets.shards import LINES_DIGEST
from bedrock_assets_tests.helpers import one_spec, pipeline_dict, step_of


def test_an_input_outside_the_quotas_says_which_limit_it_breaks():
    quotas = BatchQuotas(
        min_records_per_job=100, max_records_per_file=500, max_records_per_job=400, max_file_bytes=10_000
    )
    assert ShardInput("s00000", 400, 10_000, "s3://b/i").violation(quotas) is None
    assert ShardInput("s00000", 99, 10, "s3://b/i").violation(quotas) == "99 records, outside 100-400"
    assert ShardInput("s00000", 401, 10, "s3://b/i").violation(quotas) == "401 records, outside 100-400"
    assert ShardInput("s00000", 100, 10_001, "s3://b/i").violation(quotas) == "10001 bytes, over 10000"


def test_each_input_is_its_staged_lines_copied_in_s3_with_nothing_rendered_or_sent(s3, bucket, monkeypatch):
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=600)
    step = step_of(one_spec(pipeline_dict("copied", bucket)))
    shards = prepare_dataset(step).shards
    calls: list[str] = []
    step.s3.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    monkeypatch.setattr(jsonl_shards, "render_shard_input", lambda step, info: pytest.fail("rendered again"))
    together = threading.Barrier(3, timeout=10)  # each copy waits until all three are under way
    copy = jsonl_shards.copy_within

    def copied_together(*args):
        together.wait()
        return copy(*args)

    monkeypatch.setattr(jsonl_shards, "copy_within", copied_together)
    written = [w for _, w in jsonl_shards.write_shard_inputs(step, shards)]
    assert sorted(calls) == ["CopyObject"] * 3 + ["HeadObject"] * 3 and len(shards) == 3  # no part read or PUT
    for w, info in zip(written, shards, strict=True):
        staged = s3.get_object(Bucket=bucket, Key=step.layout.shard_lines(w.shard).key)["Body"].read()
        body = s3.get_object(Bucket=bucket, Key=step.layout.shard_input(w.shard).key)["Body"].read()
        assert body == staged and hashlib.sha256(body).hexdigest() == info.digest
        assert (w.records, w.bytes, w.uri) == (info.records, info.bytes, step.layout.shard_input(w.shard).uri)
        assert body.count(b"\n") == info.records


def test_staged_lines_that_are_not_the_plans_are_not_copied_the_rows_are_rendered_and_checked(s3, bucket):
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=600)
    step = step_of(one_spec(pipeline_dict("unstaged", bucket)))
    first, second, third = prepare_dataset(step).shards
    layout = step.layout
    s3.delete_object(Bucket=bucket, Key=layout.shard_lines(first.key).key)  # cut by a version that staged none
    s3.put_object(Bucket=bucket, Key=layout.shard_lines(second.key).key, Body=b"{}\n")  # overwritten by someone
    # the lines of another cut (a later raw_dataset), stored with their own sha256
    s3.put_object(Bucket=bucket, Key=layout.shard_lines(third.key).key, Body=b"{}\n", Metadata={"sha256": "0" * 64})
    written = {info.key: w for info, w in jsonl_shards.write_shard_inputs(step, [first, second, third])}
    for info in (first, second, third):
        body = s3.get_object(Bucket=bucket, Key=layout.shard_input(info.key).key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == info.digest and written[info.key].bytes == len(body) == info.bytes
    s3.put_object(Bucket=bucket, Key=layout.shard_rows(first.key).key, Body=s3.get_object(
        Bucket=bucket, Key=layout.shard_rows(second.key).key)["Body"].read())  # fmt: skip
    with pytest.raises(RuntimeError, match=f"shard {first.key}: rows in .* no longer match the shard plan"):
        list(jsonl_shards.write_shard_inputs(step, [first]))


def test_staged_lines_rendered_from_settings_the_pipeline_no_longer_has_are_not_copied(s3, bucket, monkeypatch):
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=200)
    (info,) = prepare_dataset(step_of(one_spec(pipeline_dict("edited", bucket)))).shards
    prompt = {"template": "Answer: {source}", "system": "Answer briefly."}
    edited = step_of(one_spec(pipeline_dict("edited", bucket, prompt=prompt)))  # raw_dataset not run again
    with pytest.raises(RuntimeError, match="s00000: rows in .* no longer match the shard plan .*raw_dataset"):
        list(jsonl_shards.write_shard_inputs(edited, [info]))
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=edited.layout.shard_input(info.key).key)
    # a setting the lines do not depend on: they are rendered again, found to be the plan's, and sent
    rounds = step_of(one_spec(pipeline_dict("edited", bucket, retry={"max_rounds": 1})))
    rendered: list[str] = []
    render = jsonl_shards.render_shard_input
    monkeypatch.setattr(jsonl_shards, "render_shard_input", lambda st, i: rendered.append(i.key) or render(st, i))
    ((_, written),) = jsonl_shards.write_shard_inputs(rounds, [info])
    body = s3.get_object(Bucket=bucket, Key=rounds.layout.shard_input(info.key).key)["Body"].read()
    assert rendered == ["s00000"] and hashlib.sha256(body).hexdigest() == info.digest
    assert written.bytes == len(body) == info.bytes


def test_staged_lines_of_another_size_are_not_copied_even_with_the_plans_digest_and_settings(s3, bucket, monkeypatch):
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=200)
    step = step_of(one_spec(pipeline_dict("resized", bucket)))
    (info,) = prepare_dataset(step).shards
    staged = step.layout.shard_lines(info.key)
    found = s3.head_object(Bucket=bucket, Key=staged.key)
    body = s3.get_object(Bucket=bucket, Key=staged.key)["Body"].read()
    assert len(body) == info.bytes and found["Metadata"][LINES_DIGEST] == info.digest
    # a line appended by someone who kept the metadata: only the size says the lines are not the plan's
    s3.put_object(Bucket=bucket, Key=staged.key, Body=body + b"{}\n", Metadata=found["Metadata"])
    monkeypatch.setattr(jsonl_shards, "copy_within", lambda *a: pytest.fail("copied lines of another size"))
    ((_, written),) = jsonl_shards.write_shard_inputs(step, [info])
    sent = s3.get_object(Bucket=bucket, Key=step.layout.shard_input(info.key).key)["Body"].read()
    assert sent == body and written.bytes == info.bytes and written.records == info.records


def test_staged_lines_that_change_between_the_check_and_the_copy_are_not_copied(s3, bucket, monkeypatch):
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=200)
    step = step_of(one_spec(pipeline_dict("raced", bucket)))
    (info,) = prepare_dataset(step).shards
    staged = step.layout.shard_lines(info.key)
    checked = jsonl_shards.head

    def then_changed(s3_access, loc):
        found = checked(s3_access, loc)
        s3.put_object(Bucket=bucket, Key=staged.key, Body=b"{}\n", Metadata={"sha256": info.digest})
        return found

    monkeypatch.setattr(jsonl_shards, "head", then_changed)
    with pytest.raises(RuntimeError, match=f"shard s00000: {staged.uri} changed while it was copied .* again"):
        list(jsonl_shards.write_shard_inputs(step, [info]))
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=step.layout.shard_input(info.key).key)


def test_shards_without_staged_lines_render_the_next_while_the_last_uploads_and_every_input_lands(
    s3, bucket, tmp_path, monkeypatch
):
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=600)
    step = step_of(one_spec(pipeline_dict("behind", bucket)))
    shards = prepare_dataset(step).shards
    for info in shards:  # an index cut by a version that staged no lines
        s3.delete_object(Bucket=bucket, Key=step.layout.shard_lines(info.key).key)
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
