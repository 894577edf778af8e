"""Chained pipelines: stage 2 reads stage 1's merged dataset, in the asset graph and at run time."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bedrock_assets.chain import ChainView
from bedrock_assets.keys import PipelineKeys
from bedrock_assets.runner import run_pipelines
from bedrock_assets.sources import SourceError
from bedrock_assets.spec import SpecError
from bedrock_assets.uris import parse_s3_uri
from bedrock_assets_tests.helpers import one_spec, pipeline_dict


def stage2(bucket: str, **source) -> dict:
    return pipeline_dict(
        "review",
        bucket,
        source={"pipeline": "answers", **source},
        prompt={"template": "Question: {source}\nAnswer: {answers_output_text}\nIs it right?"},
    )


def test_the_view_keeps_succeeded_rows_and_prefixes_upstream_outcome_columns():
    merged = pa.record_batch(
        {
            "source": ["a", "b", "c"],
            "record_id": ["r0", "r1", "r2"],
            "shard": ["s00000"] * 3,
            "output_text": ["A", None, "C"],
            "error_code": [None, "400", None],
        }
    )
    view = ChainView("answers")
    assert view.selected(merged.schema.names) == ["record_id", "source", "output_text"]
    out = view.apply(merged)
    assert out.schema.names == ["record_id", "source", "answers_output_text"]
    assert out.column("record_id").to_pylist() == ["r0", "r2"]
    every = ChainView("answers", succeeded_only=False, columns=("output_text",)).apply(merged)
    assert every.schema.names == ["record_id", "answers_output_text"] and every.num_rows == 3
    with pytest.raises(SourceError, match=r"source.columns \['nope'\] are not in answers's merged dataset"):
        ChainView("answers", columns=("nope",)).selected(merged.schema.names)


def test_a_chain_names_one_source_and_not_itself(bucket):
    with pytest.raises(SpecError, match="exactly one of source.uri"):
        one_spec(stage2(bucket, uri=f"s3://{bucket}/x.parquet"))
    with pytest.raises(SpecError, match="is this pipeline"):
        one_spec({**stage2(bucket), "name": "answers"})
    assert one_spec(stage2(bucket)).source.id_column == "record_id"


def test_stage_two_reads_stage_ones_merged_dataset_and_one_run_carries_both(
    make_pipelines, instance, stack, s3, bucket, tmp_path
):
    stack.configure(record_error_rate=0.05)
    no_retry = {"max_rounds": 0, "max_job_attempts": 1}
    defs, (first, second) = make_pipelines(
        [pipeline_dict("answers", bucket, retry=no_retry, max_error_rate=0.2), stage2(bucket)], rows=300
    )
    graph = defs.resolve_asset_graph()
    assert PipelineKeys("answers").merged_dataset in graph.get(PipelineKeys("review").raw_dataset).parent_keys

    upstream, downstream = run_pipelines(
        defs, [first, second], instance, poll_seconds=0.05, timeout_seconds=180, log=lambda _: None
    )
    assert 0 < upstream.failed < 100 and downstream.rows == upstream.succeeded  # only the rows that succeeded
    assert downstream.failed == 0

    def read(uri: str, name: str) -> pa.Table:
        loc = parse_s3_uri(uri)
        s3.download_file(loc.bucket, loc.key, str(tmp_path / name))
        return pq.read_table(tmp_path / name)

    answers, reviews = read(upstream.merged_uri, "a.parquet"), read(downstream.merged_uri, "r.parquet")
    ok = answers.filter(pc.is_null(answers.column("error_code")))
    assert reviews.column("record_id").to_pylist() == ok.column("record_id").to_pylist()  # lineage by record id
    assert reviews.column("answers_output_text").to_pylist() == ok.column("output_text").to_pylist()
    assert all(t.startswith("[emulated]") for t in reviews.column("output_text").to_pylist())
