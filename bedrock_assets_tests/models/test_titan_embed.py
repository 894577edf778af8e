"""Titan Text Embeddings bodies and answers."""

from __future__ import annotations

import json

import pytest

from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets_tests.helpers import NO_RECOURSE, pipeline_dict, read_parquet, run
from bedrock_assets_tests.models.oracles import ROW, TITAN_V1, build, validate


def test_titan_body_validation_and_parse():
    a = adapter_for(
        "amazon.titan-embed-text-v2:0",
        "InvokeModel",
        PromptSettings(input_column="source"),
        InferenceSettings(dimensions=256),
    )
    assert build(a, ROW) == {"inputText": "What is 2+2?", "dimensions": 256, "normalize": True}
    with pytest.raises(ValueError, match="inputText must be a non-empty string"):
        validate(a, build(a, {"source": "  "}))
    out = a.parse({"embedding": [0.5] * 256, "inputTextTokenCount": 7})
    assert len(out.embedding) == 256 and out.input_tokens == 7
    with pytest.raises(ValueError, match="list of 256 floats, got 3"):
        a.parse({"embedding": [1.0, 2.0, 3.0]})


def test_titan_v1_has_no_batch_inference_but_its_bodies_are_answered_on_demand(
    make_pipelines, instance, s3, bucket, stack, tmp_path
):
    attrs = pipeline_dict("titan_v1", bucket, model=TITAN_V1, prompt={"input_column": "source"}, retry=NO_RECOURSE)
    defs, (spec,) = make_pipelines([attrs], rows=120)
    summary = run(defs, spec, instance)

    # as on Bedrock ("Supported Regions and models for batch inference" does not list it), the job is refused
    assert (summary.succeeded, summary.failed, summary.errors) == (0, 120, {"JobSubmitFailed": 120})
    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert all("does not support batch inference" in m for m in merged.column("error_message").to_pylist())
    # the runtime API (InvokeModel) takes the same body
    a = spec.adapter()
    response = stack.client("bedrock-runtime").invoke_model(modelId=TITAN_V1, body=json.dumps(build(a, ROW)))
    parsed = a.parse(json.loads(response["body"].read()))
    assert len(parsed.embedding) == 1536 and parsed.input_tokens > 0 and parsed.output_tokens == 0
