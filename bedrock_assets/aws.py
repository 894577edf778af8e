"""boto3 sessions and clients for our resources, configured the dagster-aws way.

Every endpoint, credential and region left unset comes from the standard AWS configuration
(``AWS_ENDPOINT_URL*``, profiles, ``AWS_REGION``), so the same code runs against AWS or the local stack.
"""

from __future__ import annotations

from typing import Any

import boto3
from dagster_aws.utils import ResourceWithBoto3Configuration, construct_boto_client_retry_config


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
