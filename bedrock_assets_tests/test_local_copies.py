"""This process's copies of S3 objects: read back with a conditional GET while unchanged, within their limit."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from bedrock_assets.local_copies import COPIES, LocalCopies
from bedrock_assets.storage import S3Access, local_copy, upload_file
from bedrock_assets.uris import S3Location
from bedrock_assets_tests.helpers import S3Calls


def test_a_copy_this_process_wrote_is_read_back_without_a_download_until_someone_changes_it(stack, bucket, tmp_path):
    client = boto3.client("s3")
    calls = S3Calls(client)
    loc = S3Location(bucket, "canonical/s00000.parquet")
    written = tmp_path / "part.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), written)
    upload_file(S3Access(client), written, loc, keep=True)
    assert not written.exists()  # handed over: nobody can rewrite the kept bytes through this path
    with local_copy(S3Access(client), loc) as path:
        assert pq.read_table(path).column("x").to_pylist() == list(range(1000))
    assert calls.gets == [(304, 0)]  # one conditional GET, nothing downloaded

    pq.write_table(pa.table({"x": [7]}), tmp_path / "other.parquet")
    boto3.client("s3").upload_file(str(tmp_path / "other.parquet"), bucket, loc.key)  # another writer
    with local_copy(S3Access(client), loc, keep=True) as path:
        assert pq.read_table(path).column("x").to_pylist() == [7]
    assert calls.gets[1][0] == 200 and calls.gets[1][1] > 0
    with local_copy(S3Access(client), loc) as path:  # what it just read is kept too
        assert pq.read_table(path).column("x").to_pylist() == [7]
    assert calls.gets[2] == (304, 0)


def test_without_local_copies_or_with_their_files_gone_every_read_downloads(stack, bucket, tmp_path, monkeypatch):
    client = boto3.client("s3")
    calls = S3Calls(client)
    loc = S3Location(bucket, "outputs/s00000.parquet")
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "a.parquet")
    upload_file(S3Access(client), tmp_path / "a.parquet", loc, keep=True)
    shutil.rmtree(COPIES._directory())  # a /tmp cleaner removed the copies
    with local_copy(S3Access(client), loc) as path:
        assert pq.read_table(path).column("x").to_pylist() == [1, 2]
    assert [status for status, _ in calls.gets] == [304, 200]  # the 304 found no file: downloaded after all

    monkeypatch.setattr(COPIES, "limit_bytes", 0)  # BEDROCK_ASSETS_LOCAL_COPIES_MB=0
    pq.write_table(pa.table({"x": [3]}), tmp_path / "b.parquet")
    upload_file(S3Access(client), tmp_path / "b.parquet", loc, keep=True)
    for _ in range(2):
        with local_copy(S3Access(client), loc, keep=True) as path:
            assert pq.read_table(path).column("x").to_pylist() == [3]
    assert [status for status, _ in calls.gets[2:]] == [200, 200]


def test_local_copies_keep_the_most_recently_used_within_their_limit(tmp_path):
    copies = LocalCopies(limit_bytes=4000)

    def file(name: str, size: int = 900) -> Path:
        path = tmp_path / name
        path.write_bytes(name.encode()[:1] * size)
        return path

    a, b, c = (S3Location("bucket", k) for k in "abc")
    copies.adopt(a, file("a"), '"a"')
    copies.adopt(b, file("b"), '"b"')
    assert copies.link(a, '"a"', tmp_path / "a.out")  # a is now the most recently used
    copies.adopt(c, file("c"), '"c"')
    big = file("big", 1500)  # over a quarter of the limit: not kept, and left where it is
    copies.adopt(S3Location("bucket", "big"), big, '"big"')
    assert copies.etag_of(S3Location("bucket", "big")) is None and big.exists()
    copies.adopt(S3Location("bucket", "d"), file("d"), '"d"')  # 3600 bytes held: still within 4000
    copies.adopt(S3Location("bucket", "e"), file("e"), '"e"')  # over: b, the least recently used, goes
    assert copies.etag_of(b) is None and copies.etag_of(a) == '"a"' and copies.etag_of(c) == '"c"'
    assert not copies.link(a, '"changed"', tmp_path / "stale.out")  # another ETag: not this copy
    assert (tmp_path / "a.out").read_bytes() == b"a" * 900
