"""The local stack server: one loopback endpoint for S3, DynamoDB, Bedrock batch jobs and bedrock-runtime."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import LocalStackApp
from .faults import FaultConfig
from .jobs import BatchJobEmulator

JOBS_FILE = "bedrock_jobs.json"
SNAPSHOT_DIR = "snapshot"
PERSIST_SECONDS = 2.0
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every request line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LocalStack:
    """moto (S3, DynamoDB, ...) plus the Bedrock batch-job and runtime emulators behind one HTTP endpoint.

    Runs a threaded werkzeug server in a daemon thread. With ``state_dir`` the job table is
    persisted at every change, S3/DynamoDB are snapshotted every ``PERSIST_SECONDS`` after a write
    (objects unchanged since the last snapshot are linked, not copied) and on ``stop()``, and restored
    on ``start()``: a stack killed with SIGKILL loses at most the last few seconds of writes.
    Note: moto keeps its data in process-global backends, so stacks in one process share S3/DynamoDB.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
        time_scale: float = 0.2,
        faults: FaultConfig | None = None,
        concurrency_limits: dict[str, int] | None = None,
        default_concurrency_limit: int = 20,
        region: str = "us-east-1",
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.state_dir = Path(state_dir) if state_dir else None
        self.emulator = BatchJobEmulator(
            time_scale=time_scale,
            faults=faults or FaultConfig(),
            concurrency_limits=concurrency_limits,
            default_concurrency_limit=default_concurrency_limit,
            state_file=self.state_dir / JOBS_FILE if self.state_dir else None,
            region=region,
        )
        self._server: BaseWSGIServer | None = None
        self._session = boto3.session.Session()
        self._session_lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._thread: threading.Thread | None = None
        self._app: LocalStackApp | None = None
        self._persisting = threading.Event()
        self._persister: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Start serving (restoring S3/DynamoDB from ``state_dir`` if a snapshot exists)."""
        if self._server is not None:
            return self
        if self.state_dir:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        app = self._app = LocalStackApp(self.emulator)
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-stack", daemon=True)
        self._thread.start()
        self.emulator.s3 = self.client("s3")
        self.emulator.cloudwatch = self.client("cloudwatch")
        if self.state_dir:
            restore_snapshot(self, self.state_dir / SNAPSHOT_DIR)
            self._persisting.clear()
            self._persister = threading.Thread(target=self._persist, name="local-stack-persist", daemon=True)
            self._persister.start()
        return self

    def _persist(self) -> None:
        """Snapshot S3 and DynamoDB every PERSIST_SECONDS in which something was written."""
        assert self._app is not None and self.state_dir is not None
        saved = self._app.writes
        while not self._persisting.wait(PERSIST_SECONDS):
            writes = self._app.writes
            if writes != saved:
                save_snapshot(self, self.state_dir / SNAPSHOT_DIR)
                saved = writes

    def stop(self) -> None:
        """Snapshot S3/DynamoDB into ``state_dir`` (if set) and shut the server down."""
        if self._server is None:
            return
        try:
            if self._persister is not None:
                self._persisting.set()
                self._persister.join(timeout=60)
                self._persister = None
            if self.state_dir:
                save_snapshot(self, self.state_dir / SNAPSHOT_DIR)
        finally:
            self._server.shutdown()
            self._server.server_close()
            if self._thread:
                self._thread.join(timeout=10)
            self._server = None
            self._thread = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- access -----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """Base URL of the stack (valid after ``start()``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point plain boto3 clients at this stack."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` bound to this stack (cached when called without kwargs)."""
        key = (service, self.endpoint_url)
        if not kwargs and key in self._clients:
            return self._clients[key]
        config = kwargs.pop("config", None) or Config(
            s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16
        )
        with self._session_lock:
            client = self._session.client(
                service, endpoint_url=self.endpoint_url, region_name=self.region, config=config, **CREDENTIALS, **kwargs
            )
        if not kwargs:
            self._clients[key] = client
        return client

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change fault knobs / time_scale / concurrency limits at runtime (see BatchJobEmulator.configure)."""
        return self.emulator.configure(**knobs)

    def runtime_calls(self) -> dict[str, int]:
        """bedrock-runtime calls received so far per operation: ``{"InvokeModel": n, "Converse": m}``."""
        return self.emulator.runtime_calls()


# ---- snapshot / restore of S3 and DynamoDB ---------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"__b64__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _decode(obj: dict) -> Any:
    if set(obj) == {"__b64__"}:
        return base64.b64decode(obj["__b64__"])
    return obj


def save_snapshot(stack: LocalStack, target: Path) -> None:
    """Write every S3 bucket/object and DynamoDB table/item of the stack into ``target``."""
    new, old = target.with_name(target.name + ".new"), target.with_name(target.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    (new / "objects").mkdir(parents=True)
    s3, ddb = stack.client("s3"), stack.client("dynamodb")
    kept = _saved_objects(target)

    def download(bucket: str, key: str, etag: str, fname: str) -> dict:
        same = kept.get((bucket, key))
        if same is not None and same.get("etag") == etag:  # unchanged since the last snapshot: linked
            os.link(target / "objects" / same["file"], new / "objects" / fname)
            return {**same, "file": fname}
        resp = s3.get_object(Bucket=bucket, Key=key)
        with open(new / "objects" / fname, "wb") as fh:
            shutil.copyfileobj(resp["Body"], fh, 1 << 20)
        return {
            "key": key,
            "file": fname,
            "etag": resp.get("ETag", etag),
            "content_type": resp.get("ContentType"),
            "metadata": resp.get("Metadata") or {},
        }

    buckets = []
    n = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            location = s3.get_bucket_location(Bucket=name).get("LocationConstraint")
            futures = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                for obj in page.get("Contents", []):
                    n += 1
                    futures.append(pool.submit(download, name, obj["Key"], obj.get("ETag", ""), f"{n:08d}.bin"))
            buckets.append({"name": name, "location": location, "objects": futures})
        for bucket in buckets:
            bucket["objects"] = [f.result() for f in bucket["objects"]]
    (new / "s3.json").write_text(json.dumps({"buckets": buckets}))
    tables = []
    for page in ddb.get_paginator("list_tables").paginate():
        for table_name in page["TableNames"]:
            desc = ddb.describe_table(TableName=table_name)["Table"]
            items = [item for p in ddb.get_paginator("scan").paginate(TableName=table_name) for item in p["Items"]]
            tables.append({"create": _create_table_args(desc), "items": items})
    (new / "dynamodb.json").write_text(json.dumps({"tables": tables}, default=_encode))
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _saved_objects(snapshot: Path) -> dict[tuple[str, str], dict]:
    """(bucket, key) -> its entry in the snapshot's s3.json (with its etag), for objects to link, not copy."""
    index = snapshot / "s3.json"
    if not index.exists():
        return {}
    return {(b["name"], o["key"]): o for b in json.loads(index.read_text())["buckets"] for o in b["objects"]}


def _create_table_args(desc: dict) -> dict:
    billing = (desc.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    args: dict[str, Any] = {
        "TableName": desc["TableName"],
        "KeySchema": desc["KeySchema"],
        "AttributeDefinitions": desc["AttributeDefinitions"],
        "BillingMode": billing,
    }

    def throughput(d: dict) -> dict:
        pt = d.get("ProvisionedThroughput") or {}
        return {
            "ReadCapacityUnits": max(1, pt.get("ReadCapacityUnits", 1)),
            "WriteCapacityUnits": max(1, pt.get("WriteCapacityUnits", 1)),
        }

    if billing == "PROVISIONED":
        args["ProvisionedThroughput"] = throughput(desc)
    if desc.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = [
            {
                "IndexName": g["IndexName"],
                "KeySchema": g["KeySchema"],
                "Projection": g["Projection"],
                **({"ProvisionedThroughput": throughput(g)} if billing == "PROVISIONED" else {}),
            }
            for g in desc["GlobalSecondaryIndexes"]
        ]
    if desc.get("LocalSecondaryIndexes"):
        args["LocalSecondaryIndexes"] = [
            {"IndexName": idx["IndexName"], "KeySchema": idx["KeySchema"], "Projection": idx["Projection"]}
            for idx in desc["LocalSecondaryIndexes"]
        ]
    stream = desc.get("StreamSpecification")
    if stream and stream.get("StreamEnabled"):
        args["StreamSpecification"] = stream
    return args


def restore_snapshot(stack: LocalStack, source: Path) -> None:
    """Recreate the buckets/objects and tables/items saved by ``save_snapshot`` (idempotent; a snapshot being
    replaced when the stack was killed is read from where it was moved)."""
    if not source.exists():
        source = source.with_name(source.name + ".old")
    if not source.exists():
        return
    s3, ddb = stack.client("s3"), stack.client("dynamodb")

    def upload(bucket: str, obj: dict) -> None:
        extra: dict[str, Any] = {"Metadata": obj["metadata"]}
        if obj.get("content_type"):
            extra["ContentType"] = obj["content_type"]
        with open(source / "objects" / obj["file"], "rb") as fh:
            s3.put_object(Bucket=bucket, Key=obj["key"], Body=fh, **extra)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = []
        for bucket in json.loads((source / "s3.json").read_text())["buckets"]:
            kwargs: dict[str, Any] = {"Bucket": bucket["name"]}
            if bucket.get("location"):
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": bucket["location"]}
            try:
                s3.create_bucket(**kwargs)
            except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
                pass
            futures += [pool.submit(upload, bucket["name"], obj) for obj in bucket["objects"]]
        for future in futures:
            future.result()
    for table in json.loads((source / "dynamodb.json").read_text(), object_hook=_decode)["tables"]:
        name = table["create"]["TableName"]
        try:
            ddb.create_table(**table["create"])
        except ddb.exceptions.ResourceInUseException:
            pass
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        items = table["items"]
        for start in range(0, len(items), 25):
            request: dict[str, Any] | None = {
                name: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            }
            while request:
                request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or None


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 4566,
    state_dir: Path | None = None,
    time_scale: float = 0.2,
    faults: FaultConfig | None = None,
    concurrency_limits: dict[str, int] | None = None,
    default_concurrency_limit: int = 20,
) -> None:
    """Run a LocalStack in the foreground until SIGINT/SIGTERM, then snapshot and stop cleanly."""
    stack = LocalStack(host, port, state_dir, time_scale, faults, concurrency_limits, default_concurrency_limit)
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack.start()
    try:
        print(
            f"Local stack (S3, DynamoDB, Bedrock batch + runtime emulator) listening on {stack.endpoint_url}",
            flush=True,
        )
        print("Export these to point boto3 / the AWS CLI at it:", flush=True)
        for key, value in stack.env().items():
            print(f"export {key}={value}", flush=True)
        if state_dir:
            print(f"State directory: {state_dir}", flush=True)
        while not done.wait(0.5):
            pass
        print("Stopping local stack...", flush=True)
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
