"""Streaming S3 helpers over plain boto3 (endpoint from the standard AWS configuration)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from botocore.exceptions import ClientError

from bedrock_assets.local_copies import COPIES
from bedrock_assets.uris import S3Location

_CHUNK = 1 << 20
SINGLE_PUT_BYTES = 64 * _CHUNK  # larger files are uploaded in parts


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


def upload_file(
    s3: S3Access, path: Path, loc: S3Location, keep: bool = False, metadata: Mapping[str, str] | None = None
) -> None:
    """Upload a local file (streamed; in parts above 64 MB), with ``metadata`` as its user metadata.

    ``keep``: the caller hands the file over (the path is gone afterwards); it becomes this process's copy
    of the object when it fits, so a later ``local_copy`` of it downloads nothing while it is unchanged.
    """
    with open(path, "rb") as body:
        etag = upload_fileobj(s3, body, path.stat().st_size, loc, metadata)
    if keep:
        if etag is not None:
            COPIES.adopt(loc, path, etag)
        path.unlink(missing_ok=True)  # not kept (too large, or uploaded in parts)


def upload_fileobj(
    s3: S3Access, body: BinaryIO, size: int, loc: S3Location, metadata: Mapping[str, str] | None = None
) -> str | None:
    """Upload an open file positioned at its start: one PUT up to 64 MB (its ETag is returned), in parts above."""
    extra = {**s3.write_args(), **({"Metadata": dict(metadata)} if metadata else {})}
    if size <= SINGLE_PUT_BYTES:
        return s3.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=body, **extra)["ETag"]
    s3.client.upload_fileobj(body, loc.bucket, loc.key, ExtraArgs=extra or None)
    return None


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD of an object says: its ETag, size and user metadata."""

    etag: str
    size: int
    metadata: Mapping[str, str]


def is_missing(error: ClientError) -> bool:
    """The error says the object (or key) does not exist."""
    return error.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound")


def head(s3: S3Access, loc: S3Location) -> ObjectHead | None:
    """The object's ETag, size and user metadata; None if it does not exist."""
    try:
        response = s3.client.head_object(Bucket=loc.bucket, Key=loc.key, **s3.read_args())
    except ClientError as e:
        if is_missing(e):
            return None
        raise
    return ObjectHead(response["ETag"], response["ContentLength"], response.get("Metadata", {}))


# CopyObject copies an object of up to 5 GB in one call; larger ones take a multipart copy
# (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html).
COPY_OBJECT_BYTES = 5 * 1024**3


def copy_within(s3: S3Access, source: S3Location, etag: str, target: S3Location) -> None:
    """Server-side copy of ``source`` as it was when its ETag was ``etag`` (S3 refuses it with 412
    PreconditionFailed if it changed since) to ``target``, keeping its user metadata; nothing passes through
    this process. The expected owner applies to both buckets, the KMS key to the copy."""
    owner = {"ExpectedSourceBucketOwner": s3.expected_bucket_owner} if s3.expected_bucket_owner else {}
    s3.client.copy_object(
        Bucket=target.bucket,
        Key=target.key,
        CopySource={"Bucket": source.bucket, "Key": source.key},
        CopySourceIfMatch=etag,
        **owner,
        **s3.write_args(),
    )


R = TypeVar("R")


@dataclass(frozen=True)
class Stored(Generic[R]):
    """A result and the upload that stores it; ``discard`` frees what the upload would have sent, when it never
    runs because an earlier upload failed."""

    result: R
    upload: Callable[[], object]
    discard: Callable[[], object] = lambda: None


class UploadBehind:
    """Uploads pushed one at a time to a writer thread: ``send`` waits for the upload before (its error
    surfaces there) and starts the next, so one upload is in flight while the caller works on. ``wait``
    waits for the last one; ``close`` (or leaving the block) stops the thread once its upload has ended."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="bedrock-assets-upload")
        self._pending: Future[object] | None = None

    def __enter__(self) -> UploadBehind:
        return self

    def send(self, upload: Callable[[], object]) -> None:
        self.wait()
        self._pending = self._pool.submit(upload)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


def uploaded_behind(work: Iterable[Stored[R]]) -> Iterator[R]:
    """Each result of ``work`` once its upload is done, in order, the upload running on a writer thread while
    the next item is worked on: one upload in flight, so at most two items' files exist. An upload's error
    surfaces in order, before any later result; the item worked on meanwhile is discarded."""
    with UploadBehind() as uploads:
        in_flight: list[R] = []  # the result whose upload runs (a list: a result may be None)
        for item in work:
            if in_flight:
                try:
                    uploads.wait()
                except BaseException:
                    item.discard()
                    raise
                yield in_flight.pop()
            uploads.send(item.upload)
            in_flight.append(item.result)
        if in_flight:
            uploads.wait()
            yield in_flight.pop()


@contextmanager
def local_copy(s3: S3Access, loc: S3Location, keep: bool = False) -> Iterator[Path]:
    """A local file holding the object (read it, never write it), removed afterwards. When this process
    keeps a copy of the object, one conditional GET (304 Not Modified while its ETag is unchanged)
    replaces the download; ``keep`` keeps what is downloaded for the next reader in this process."""
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-read-") as tmp:
        path = Path(tmp) / (Path(loc.key).name or "object")
        known = COPIES.etag_of(loc)
        response = None
        try:
            response = s3.client.get_object(
                Bucket=loc.bucket, Key=loc.key, **({"IfNoneMatch": known} if known else {}), **s3.read_args()
            )
        except ClientError as e:
            if known is None or e.response["Error"]["Code"] not in ("304", "NotModified"):
                raise
        if response is None and not COPIES.link(loc, known or "", path):  # evicted since: read it after all
            response = s3.client.get_object(Bucket=loc.bucket, Key=loc.key, **s3.read_args())
        if response is not None:
            with response["Body"] as body, open(path, "wb") as out:
                shutil.copyfileobj(body, out, 8 * _CHUNK)
            if keep and COPIES.enabled:
                kept = Path(tmp) / "kept"
                os.link(path, kept)
                COPIES.adopt(loc, kept, response["ETag"])
        yield path


class RangedReader(io.RawIOBase):
    """A seekable, read-only S3 object over ranged GETs: for readers that need only its header or footer."""

    def __init__(self, s3: S3Access, loc: S3Location, size: int) -> None:
        super().__init__()
        self._s3 = s3
        self._loc = loc
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        end = min(self._position + len(buffer), self._size)
        if end <= self._position:
            return 0
        data = read_bytes(self._s3, self._loc, byte_range=f"bytes={self._position}-{end - 1}")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_ranged(s3: S3Access, loc: S3Location, size: int) -> io.BufferedReader:
    """``RangedReader`` with a 1 MB buffer: a header or a Parquet footer costs one or two GETs."""
    return io.BufferedReader(RangedReader(s3, loc, size), buffer_size=_CHUNK)


def put_bytes(s3: S3Access, loc: S3Location, body: bytes, content_type: str | None = None) -> None:
    extra = {"ContentType": content_type} if content_type else {}
    s3.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=body, **extra, **s3.write_args())


def put_json(s3: S3Access, loc: S3Location, value: Any) -> None:
    put_bytes(s3, loc, json.dumps(value, indent=1).encode(), "application/json")


def read_bytes(s3: S3Access, loc: S3Location, byte_range: str | None = None) -> bytes:
    ranged = {"Range": byte_range} if byte_range else {}
    return s3.client.get_object(Bucket=loc.bucket, Key=loc.key, **ranged, **s3.read_args())["Body"].read()


def get_json(s3: S3Access, loc: S3Location) -> Any:
    return json.loads(read_bytes(s3, loc))


def list_objects(s3: S3Access, prefix: S3Location) -> Iterator[tuple[S3Location, int]]:
    """Objects whose key starts with the prefix (paginated), as (location, size), in key order."""
    pages = s3.client.get_paginator("list_objects_v2").paginate(
        Bucket=prefix.bucket, Prefix=prefix.key, **s3.read_args()
    )
    for page in pages:
        for obj in page.get("Contents", []):
            yield S3Location(prefix.bucket, obj["Key"]), obj["Size"]


def line_chunks(read: Callable[[int], bytes], chunk_bytes: int = 32 * _CHUNK) -> Iterator[memoryview]:
    """Views of a byte stream, each ending on a line boundary (the last one gets a newline): every read
    is copied once at most, to join the partial line left by the read before it."""
    pending = b""
    while chunk := read(chunk_bytes):
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield memoryview(data)[:cut]
        pending = data[cut:]
    if pending.strip():
        yield memoryview(pending + b"\n")


def iter_line_chunks(s3: S3Access, loc: S3Location, chunk_bytes: int = 32 * _CHUNK) -> Iterator[memoryview]:
    """Stream an S3 object as line-aligned chunks (never the whole file at once); the next read
    downloads while the caller works on the current chunk (about three chunks in memory at most)."""
    body = s3.client.get_object(Bucket=loc.bucket, Key=loc.key, **s3.read_args())["Body"]
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="bedrock-assets-read-ahead") as pool:
            yield from line_chunks(read_ahead(body.read, pool), chunk_bytes)
    finally:
        body.close()


def read_ahead(read: Callable[[int], bytes], pool: ThreadPoolExecutor) -> Callable[[int], bytes]:
    """``read`` with the following call already under way on ``pool`` (reads stay one at a time)."""
    following: Future[bytes] | None = None

    def next_block(size: int) -> bytes:
        nonlocal following
        block = (following or pool.submit(read, size)).result()
        following = pool.submit(read, size) if block else None
        return block

    return next_block
