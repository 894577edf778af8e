"""S3 URIs as Bedrock takes them: a lower-case bucket and key characters [-!_*'().a-zA-Z0-9/]."""

from __future__ import annotations

import pytest

from bedrock_assets.uris import S3Location, parse_s3_uri


def test_a_uri_parses_to_its_bucket_and_key_and_joins_with_single_slashes():
    loc = parse_s3_uri("s3://my-bucket/a/b/")
    assert loc == S3Location("my-bucket", "a/b") and loc.join("/c/", "d.json").uri == "s3://my-bucket/a/b/c/d.json"
    assert parse_s3_uri("s3://my-bucket").uri == "s3://my-bucket"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("my-bucket/a", "must start with s3://"),
        ("s3://My_Bucket/a", "not a valid Bedrock S3 URI"),
        ("s3://bkt/year=2026/a", "no '=', '\\+', ':' or spaces"),
        ("s3://bkt/a b", "not a valid Bedrock S3 URI"),
        ("s3://bkt/a/../b", "'.' or '..' segment"),
    ],
)
def test_uris_bedrock_refuses_are_refused_naming_what_is_wrong(uri, message):
    with pytest.raises(ValueError, match=message):
        parse_s3_uri(uri, what="output_uri")
