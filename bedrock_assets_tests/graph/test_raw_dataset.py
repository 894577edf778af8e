"""raw_dataset: the shard plan written from a source, and how it moves when the source grows."""

from __future__ import annotations

import pyarrow.parquet as pq

from bedrock_assets.graph.raw_dataset import prepare_dataset
from bedrock_assets.sample.simplecot import generate_simplecot_table
from bedrock_assets_tests.helpers import one_spec, pipeline_dict, step_of


def test_appending_a_row_to_a_local_parquet_source_keeps_earlier_shards_and_their_jobs(s3, bucket, tmp_path):
    table = generate_simplecot_table(1001, seed=3)
    digests = {}
    for rows in (1000, 1001):
        source = tmp_path / f"data-{rows}.parquet"
        pq.write_table(table.slice(0, rows), source)
        spec = one_spec(pipeline_dict("grow", bucket, source={"uri": str(source)}, shards={"max_records": 250}))
        digests[rows] = [s.digest for s in prepare_dataset(step_of(spec)).shards]
    assert len(digests[1000]) == 4 and len(digests[1001]) == 5
    # only the last full shard and the new tail change: the rest keep their input, hence their job
    assert digests[1001][:3] == digests[1000][:3]
