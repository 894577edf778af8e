"""Validation of the names Bedrock and S3 accept: S3 URIs, batch job names, request tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Bedrock's own S3Uri shape (botocore service model): lower-case bucket, key chars [-!_*'().a-zA-Z0-9/].
_S3_URI = re.compile(
    r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?"
)
# ModelInvocationJobName: 1..63 chars, no underscores.
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
# ModelInvocationIdempotencyToken.
_TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
JOB_NAME_MAX = 63


@dataclass(frozen=True)
class S3Location:
    """A parsed ``s3://bucket/key`` URI."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def join(self, *parts: str) -> "S3Location":
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
    return S3Location(bucket, key.rstrip("/"))


def validate_job_name(name: str) -> str:
    """Return ``name`` if Bedrock accepts it as a batch job name, else raise ValueError."""
    if not name or len(name) > JOB_NAME_MAX or not _JOB_NAME.fullmatch(name):
        raise ValueError(
            f"job name {name!r} is invalid: 1-{JOB_NAME_MAX} characters of [a-zA-Z0-9+.-], "
            "starting with a letter or digit, no underscores"
        )
    return name


def validate_request_token(token: str) -> str:
    if not token or len(token) > 256 or not _TOKEN.fullmatch(token):
        raise ValueError(f"clientRequestToken {token!r} is invalid: [a-zA-Z0-9-], 1-256 characters")
    return token
