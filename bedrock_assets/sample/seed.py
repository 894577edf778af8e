"""Put the bundled sample dataset where the sample pipelines read it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bedrock_assets.sample.simplecot import write_simplecot
from bedrock_assets.storage import S3Access, upload_file
from bedrock_assets.uris import parse_s3_uri

SAMPLE_URI = "s3://bedrock-assets-demo/raw/simplecot_sample.parquet"
SAMPLE_ROWS = 3000


def ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


def seed_sample(s3: Any, uri: str = SAMPLE_URI, rows: int = SAMPLE_ROWS, seed: int = 0) -> str:
    """Generate the deterministic SimpleCoT-like sample and upload it to ``uri``."""
    loc = parse_s3_uri(uri, what="sample uri")
    ensure_bucket(s3, loc.bucket)
    with tempfile.TemporaryDirectory(prefix="bedrock-assets-sample-") as tmp:
        path = write_simplecot(Path(tmp) / "sample.parquet", rows, seed=seed)
        upload_file(S3Access(s3), path, loc)
    return uri
