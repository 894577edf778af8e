"""Errors the pipeline meets at run time: which ones pass (retry), and what to do about the others."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

# AWS error codes that mean "try again later" (botocore's own transient set, plus throttling names)
TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "ProvisionedThroughputExceededException", "SlowDown", "RequestTimeout",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalServerException", "InternalError",
    "InternalFailure", "RequestTimeoutException",
})  # fmt: skip


# botocore's errors for an endpoint that did not answer
CONNECTION_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
# the class names a transient error has once serialized (a step failure's error): a modeled ClientError's
# class is named after its code
TRANSIENT_CLASS_NAMES = TRANSIENT_CODES | {c.__name__ for c in CONNECTION_ERRORS}


def is_transient(error: BaseException) -> bool:
    """An outage, a timeout or throttling: the same call can succeed later."""
    if isinstance(error, CONNECTION_ERRORS):
        return True
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_CODES or status >= 500
    return False


# A step's AWS calls: a blip past botocore's own retries retries the step; anything else fails it at once.
AWS_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def failing_at_once() -> Iterator[None]:
    """Inside, an error ends the step at once (no retry) unless it is an outage or throttling."""
    try:
        yield
    except Exception as error:
        if is_transient(error) or isinstance(error, dg.Failure):
            raise  # as it is: the step's retry policy applies
        raise dg.Failure(description=f"{type(error).__name__}: {error}", allow_retries=False) from error


def final_unless_transient(body: F) -> F:
    """A step body (a function or a generator) whose errors end it at once unless they are transient."""
    if inspect.isgeneratorfunction(body):

        @functools.wraps(body)
        def steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with failing_at_once():
                yield from body(*args, **kwargs)

        return steps  # type: ignore[return-value]

    @functools.wraps(body)
    def step(*args: Any, **kwargs: Any) -> Any:
        with failing_at_once():
            return body(*args, **kwargs)

    return step  # type: ignore[return-value]


# What to do, by the error's class name (live exceptions and Dagster's serialized step errors alike)
_HINTS = {
    "EndpointConnectionError": "nothing answers at that endpoint: start the local stack "
    '(`bedrock-assets local-stack`, then `eval "$(bedrock-assets env)"`), or for AWS unset AWS_ENDPOINT_URL*',
    "NoCredentialsError": "no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
    'AWS_SECRET_ACCESS_KEY), or point at the local stack with `eval "$(bedrock-assets env)"`',
    "PartialCredentialsError": "the AWS credentials are incomplete: set both AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or use AWS_PROFILE",
    "NoRegionError": "no AWS region: set AWS_REGION (or region_name on the resources)",
    "ProfileNotFound": "that AWS_PROFILE is not in ~/.aws/config: check its name",
}
_CODE_HINTS = {
    "AccessDenied": "the credentials were refused for this call: check the IAM policy (README, least-privilege IAM)",
    "AccessDeniedException": "the credentials were refused for this call: check the IAM policy (README)",
    "InvalidAccessKeyId": "the access key is not known to AWS: check AWS_PROFILE / AWS_ACCESS_KEY_ID",
    "UnrecognizedClientException": "the credentials are not valid for this endpoint: check AWS_PROFILE",
    "NoSuchBucket": "the bucket does not exist: check source.uri and output_uri, or create the bucket",
    "ResourceNotFoundException": "the DynamoDB ledger table does not exist and may not be created: "
    "create it or set create_if_missing",
}


def hint(class_name: str, message: str = "") -> str | None:
    """What to do about an error, or None when we have nothing better than its own message."""
    if class_name in _HINTS:
        return _HINTS[class_name]
    for code, text in _CODE_HINTS.items():
        if f"({code})" in message or message.startswith(f"{code}:"):
            return text
    return None
