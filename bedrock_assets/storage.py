"""Streaming S3 helpers over a plain boto3 client (endpoint from the standard AWS configuration)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bedrock_assets.uris import S3Location

_CHUNK = 1 << 20


def upload_file(s3: Any, path: Path, loc: S3Location) -> None:
    """Multipart-capable upload of a local file (memory bounded by the transfer chunk size)."""
    s3.upload_file(str(path), loc.bucket, loc.key)


def download_file(s3: Any, loc: S3Location, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(loc.bucket, loc.key, str(path))
    return path


def put_json(s3: Any, loc: S3Location, value: Any) -> None:
    s3.put_object(
        Bucket=loc.bucket, Key=loc.key, Body=json.dumps(value, indent=1).encode(), ContentType="application/json"
    )


def get_json(s3: Any, loc: S3Location) -> Any:
    return json.loads(s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read())


def list_objects(s3: Any, prefix: S3Location) -> Iterator[tuple[S3Location, int]]:
    """Objects whose key starts with the prefix (paginated), as (location, size), in key order."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.key):
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


def iter_line_chunks(s3: Any, loc: S3Location, chunk_bytes: int = 8 * _CHUNK) -> Iterator[bytes]:
    """Stream an S3 object as line-aligned chunks (never the whole file at once)."""
    body = s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
    try:
        yield from line_chunks(body.read, chunk_bytes)
    finally:
        body.close()
