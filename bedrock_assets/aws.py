"""boto3 sessions and clients for our resources, configured the dagster-aws way, created once per process.

Every endpoint, credential and region left unset comes from the standard AWS configuration
(``AWS_ENDPOINT_URL*``, profiles, ``AWS_REGION``), so the same code runs against AWS or the local stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from dagster_aws.utils import ResourceWithBoto3Configuration, construct_boto_client_retry_config
from pydantic import BaseModel

T = TypeVar("T")
SHARED_FOR_SECONDS = 900.0
_shared: dict[str, tuple[float, Any]] = {}
_shared_lock = threading.Lock()


def boto3_session(config: ResourceWithBoto3Configuration) -> boto3.session.Session:
    return boto3.session.Session(
        profile_name=config.profile_name,
        region_name=config.region_name,
        aws_access_key_id=config.aws_access_key_id,
        aws_secret_access_key=config.aws_secret_access_key,
        aws_session_token=config.aws_session_token,
    )


def client_args(config: ResourceWithBoto3Configuration) -> dict[str, Any]:
    """Keyword arguments for ``session.client``/``session.resource``: endpoint, TLS and retries."""
    args: dict[str, Any] = {
        "use_ssl": config.use_ssl,
        "verify": config.verify,
        "config": construct_boto_client_retry_config(config.max_attempts),
    }
    if config.endpoint_url:
        args["endpoint_url"] = config.endpoint_url
    return args


def shared(kind: str, config: BaseModel, make: Callable[[], T], per_thread: bool = False) -> T:
    """``make()`` once per process for the same kind, resource class and configuration, and ``AWS_*``
    environment, remade after ``SHARED_FOR_SECONDS`` (a profile's static credentials may be rotated).

    Creating a session and a client costs tens of milliseconds, and every step and sensor tick asks for
    them; clients are thread-safe, so one is shared. boto3 resource objects are not: ``per_thread``.
    The key is a digest, so no credential is held in it. ``make`` runs outside the lock (two threads
    may both make one; the first kept wins).
    """
    environment = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    scope = threading.get_ident() if per_thread else None
    cls = f"{type(config).__module__}.{type(config).__qualname__}"
    key = hashlib.sha256(
        json.dumps([kind, cls, scope, config.model_dump(mode="json"), environment], default=str).encode()
    ).hexdigest()
    now = time.monotonic()
    with _shared_lock:
        entry = _shared.get(key)
    if entry is not None and now - entry[0] < SHARED_FOR_SECONDS:
        return entry[1]
    made = make()
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None or now - entry[0] >= SHARED_FOR_SECONDS:
            entry = _shared[key] = (now, made)
    return entry[1]
