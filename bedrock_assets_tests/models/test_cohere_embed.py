"""Cohere Embed v3: its settings come from the spec."""

from __future__ import annotations

import pytest

from bedrock_assets.spec import SpecError, parse_pipeline
from bedrock_assets_tests.helpers import pipeline_dict
from bedrock_assets_tests.models.oracles import COHERE, ROW, build


def test_cohere_settings_come_from_the_spec():
    def attrs(**inference):
        return pipeline_dict("emb", "my-bucket", model=COHERE, prompt={"input_column": "source"}, inference=inference)

    body = build(parse_pipeline(attrs(input_type="clustering", truncate="START")).adapter(), ROW)
    assert (body["input_type"], body["truncate"]) == ("clustering", "START")
    assert build(parse_pipeline(attrs()).adapter(), ROW)["input_type"] == "search_document"
    with pytest.raises(SpecError, match="attributes.inference.truncate"):
        parse_pipeline(attrs(truncate="MIDDLE"))
