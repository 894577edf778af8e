"""boto3 sessions and clients for our resources, configured the dagster-aws way, created once per process.

Every endpoint, credential and region left unset comes from the standard AWS configuration
(``AWS_ENDPOINT_URL*``, profiles, ``AWS_REGION``), so the same code runs against AWS or the local stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from dagster_aws.utils import ResourceWithBoto3Configuration, construct_boto_client_retry_config
from pydantic import BaseModel

T = TypeVar("T")
_shared: dict[str, Any] = {}
_shared_lock = threading.RLock()


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
    """``make()`` once per process for the same kind, resource class and configuration, and ``AWS_*`` environment.

    Creating a session and a client costs tens of milliseconds, and every step and sensor tick asks for
    them; clients are thread-safe, so one is shared. boto3 resource objects are not: ``per_thread``.
    The key is a digest, so no credential is held in it.
    """
    environment = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    scope = threading.get_ident() if per_thread else None
    key = hashlib.sha256(
        json.dumps(
            [kind, type(config).__qualname__, scope, config.model_dump(mode="json"), environment], default=str
        ).encode()
    ).hexdigest()
    with _shared_lock:
        made = _shared.get(key)
        if made is None:
            made = _shared[key] = make()
    return made
