"""Streaming S3 helpers over plain boto3 (endpoint from the standard AWS configuration)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bedrock_assets.uris import S3Location

_CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Access:
    """An S3 client and the settings every call of a pipeline carries when they are set: the expected
    bucket owner (on every call) and the KMS key objects are written with (SSE-KMS)."""

    client: Any
    expected_bucket_owner: str | None = None
    kms_key_id: str | None = None

    def read_args(self) -> dict[str, str]:
        return {"ExpectedBucketOwner": self.expected_bucket_owner} if self.expected_bucket_owner else {}

    def write_args(self) -> dict[str, str]:
        kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}
        return {**self.read_args(), **kms}


def _access(s3: S3Access | Any) -> S3Access:
    """The storage helpers take an S3Access, or a plain client (no owner or KMS settings)."""
    return s3 if isinstance(s3, S3Access) else S3Access(s3)


def upload_file(s3: S3Access | Any, path: Path, loc: S3Location) -> None:
    """Multipart-capable upload of a local file (memory bounded by the transfer chunk size)."""
    s3 = _access(s3)
    s3.client.upload_file(str(path), loc.bucket, loc.key, ExtraArgs=s3.write_args() or None)


def download_file(s3: S3Access | Any, loc: S3Location, path: Path) -> Path:
    s3 = _access(s3)
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.client.download_file(loc.bucket, loc.key, str(path), ExtraArgs=s3.read_args() or None)
    return path


def put_bytes(s3: S3Access | Any, loc: S3Location, body: bytes, content_type: str | None = None) -> None:
    s3 = _access(s3)
    extra = {"ContentType": content_type} if content_type else {}
    s3.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=body, **extra, **s3.write_args())


def put_json(s3: S3Access | Any, loc: S3Location, value: Any) -> None:
    put_bytes(s3, loc, json.dumps(value, indent=1).encode(), "application/json")


def read_bytes(s3: S3Access | Any, loc: S3Location) -> bytes:
    s3 = _access(s3)
    return s3.client.get_object(Bucket=loc.bucket, Key=loc.key, **s3.read_args())["Body"].read()


def get_json(s3: S3Access | Any, loc: S3Location) -> Any:
    return json.loads(read_bytes(s3, loc))


def list_objects(s3: S3Access | Any, prefix: S3Location) -> Iterator[tuple[S3Location, int]]:
    """Objects whose key starts with the prefix (paginated), as (location, size), in key order."""
    s3 = _access(s3)
    pages = s3.client.get_paginator("list_objects_v2").paginate(
        Bucket=prefix.bucket, Prefix=prefix.key, **s3.read_args()
    )
    for page in pages:
        for obj in page.get("Contents", []):
            yield S3Location(prefix.bucket, obj["Key"]), obj["Size"]


def line_chunks(read: Callable[[int], bytes], chunk_bytes: int = 8 * _CHUNK) -> Iterator[bytes]:
    """Chunks of a byte stream that each end on a line boundary (the last one gets a newline)."""
    pending = b""
    while True:
        chunk = read(chunk_bytes)
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        pending = data[cut + 1 :]
        yield data[: cut + 1]
    if pending.strip():
        yield pending + b"\n"


def iter_line_chunks(s3: S3Access | Any, loc: S3Location, chunk_bytes: int = 8 * _CHUNK) -> Iterator[bytes]:
    """Stream an S3 object as line-aligned chunks (never the whole file at once)."""
    s3 = _access(s3)
    body = s3.client.get_object(Bucket=loc.bucket, Key=loc.key, **s3.read_args())["Body"]
    try:
        yield from line_chunks(body.read, chunk_bytes)
    finally:
        body.close()
