"""Job names, request tokens and tags: deterministic, and within the patterns Bedrock enforces."""

from __future__ import annotations

import pytest

from bedrock_assets.bedrock.naming import (
    JOB_NAME_MAX,
    JOB_NAME_SUFFIX_MAX,
    attempts_in,
    check_tag,
    job_name,
    request_token,
    validate_job_name,
)

DIGEST = "0123456789abcdef" * 4


def test_a_job_is_named_by_its_shard_input_and_attempt():
    assert job_name("cot", "s00001", DIGEST, 1) == "cot-s00001-0123456789"
    assert job_name("cot", "r1-00000", DIGEST, 3) == "cot-r1-00000-0123456789-a3"
    longest = job_name("p" * (JOB_NAME_MAX - JOB_NAME_SUFFIX_MAX), "r9-99999", DIGEST, 9)
    assert len(longest) <= JOB_NAME_MAX  # the longest prefix the spec allows fits with any retry shard
    names = ["cot-s00001-0123456789", "cot-s00001-0123456789-a2", "cot-s00001-0123456789-a10", "cot-s00002-0123456789"]
    assert attempts_in(names, "cot", "s00001", DIGEST) == [1, 2, 10]


@pytest.mark.parametrize("name", ["with_underscore", "-leading", "x" * 64, "", "spa ce"])
def test_names_bedrock_refuses_are_refused_here(name):
    with pytest.raises(ValueError, match="job name"):
        validate_job_name(name)


def test_the_request_token_is_the_same_for_the_same_request_only():
    token = request_token("cot-s00001-0123456789", "s3://b/in.jsonl", "s3://b/out")
    assert token == request_token("cot-s00001-0123456789", "s3://b/in.jsonl", "s3://b/out")
    assert token != request_token("cot-s00001-0123456789-a2", "s3://b/in.jsonl", "s3://b/out")
    assert len(token) == 40 and token.isalnum()


def test_tags_aws_reserves_or_bedrock_refuses_are_refused():
    check_tag("team", "data science / ml")
    with pytest.raises(ValueError, match="reserves"):
        check_tag("aws:team", "x")
    with pytest.raises(ValueError, match="value"):
        check_tag("team", "a,b")
