"""S3 locations, validated against the characters Bedrock accepts in its S3 URIs."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Bedrock's own S3Uri shape (botocore service model): lower-case bucket, key chars [-!_*'().a-zA-Z0-9/].
_S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")


@dataclass(frozen=True)
class S3Location:
    """A parsed ``s3://bucket/key`` URI."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def join(self, *parts: str) -> S3Location:
        """Child location; parts are joined with single slashes."""
        pieces = [p.strip("/") for p in (self.key, *parts) if p and p.strip("/")]
        return S3Location(self.bucket, "/".join(pieces))


def is_s3_uri(uri: str) -> bool:
    return uri.startswith("s3://")


def parse_s3_uri(uri: str, *, what: str = "S3 URI") -> S3Location:
    """Parse and validate an S3 URI against the character set Bedrock accepts.

    Raises ValueError naming ``what`` and the offending URI.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{what} must start with s3://, got {uri!r}")
    if len(uri) > 1024 or not _S3_URI.fullmatch(uri):
        raise ValueError(
            f"{what} {uri!r} is not a valid Bedrock S3 URI: bucket must be 3-63 chars of "
            "[a-z0-9.-], key characters limited to [-!_*'().a-zA-Z0-9/] (no '=', '+', ':' or spaces)"
        )
    bucket, _, key = uri[5:].partition("/")
    if any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"{what} {uri!r} has a '.' or '..' segment: S3 keys are not paths, write the prefix out")
    return S3Location(bucket, key.rstrip("/"))
