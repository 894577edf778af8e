"""Batch job names, idempotency tokens and tags: deterministic, and validated against Bedrock's own patterns."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

# ModelInvocationJobName: 1..63 chars of [a-zA-Z0-9+.-], no underscores.
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
# ModelInvocationIdempotencyToken.
_TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
JOB_NAME_MAX = 63
# "<prefix>-<shard key>-<10-char digest>[-a<attempt>]": what follows the prefix, at most (a retry shard's
# key, r1-00000 … r9-99999, is two characters longer: its jobs fit while their attempt number has one digit)
JOB_NAME_SUFFIX_MAX = len("-s00000-") + 10 + len("-a999")


# The job ARN an attempt answered on demand (runtime API) is recorded under: ON_DEMAND_ARN + job name.
ON_DEMAND_ARN = "on-demand/"
# The job ARN of an attempt whose every record the record cache answered (no job, nothing paid): CACHE_ARN + name.
CACHE_ARN = "cache/"
# The ledger "shard" of a pipeline's canary attempts (bedrock.canary): never a partition, never a job name.
CANARY_SHARD = "canary"

_TAG_TEXT = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")


def check_tag(key: str, value: str) -> None:
    """Raise ValueError unless Bedrock accepts the tag (its TagKey/TagValue patterns; ``aws:`` is reserved)."""
    if not 1 <= len(key) <= 128 or not _TAG_TEXT.fullmatch(key):
        raise ValueError(f"tag key {_short(key)} must be 1-128 characters of letters, digits, spaces and ._:/=+@-")
    if key.lower().startswith("aws:"):
        raise ValueError(f"tag key {_short(key)} starts with 'aws:', which AWS reserves")
    if len(value) > 256 or not _TAG_TEXT.fullmatch(value):
        raise ValueError(
            f"tag {_short(key)}: value {_short(value)} must be at most 256 characters of letters, digits, spaces "
            "and ._:/=+@-"
        )


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def validate_job_name(name: str) -> str:
    """Return ``name`` if Bedrock accepts it as a batch job name, else raise ValueError."""
    if not name or len(name) > JOB_NAME_MAX or not _JOB_NAME.fullmatch(name):
        raise ValueError(
            f"job name {name!r} is invalid: 1-{JOB_NAME_MAX} characters of [a-zA-Z0-9+.-], "
            "starting with a letter or digit, no underscores"
        )
    return name


def validate_request_token(token: str) -> str:
    if not token or len(token) > 256 or not _TOKEN.fullmatch(token):
        raise ValueError(f"clientRequestToken {token!r} is invalid: [a-zA-Z0-9-], 1-256 characters")
    return token


def named_by(prefix: str, name: str) -> bool:
    """Whether a job name has the shape ``job_name`` gives a pipeline with this prefix (another pipeline whose
    prefix merely starts the same, ``cot-review`` beside ``cot``, does not match)."""
    return re.fullmatch(rf"{re.escape(prefix)}-(s\d{{5}}|r\d-\d{{5}})-[0-9a-zA-Z]{{10}}(-a\d+)?", name) is not None


def job_name(prefix: str, shard: str, digest: str, attempt: int) -> str:
    """One name per (shard input, attempt): changed input or a new attempt means a new job."""
    name = f"{prefix}-{shard}-{digest[:10]}" + (f"-a{attempt}" if attempt > 1 else "")
    return validate_job_name(name)


def attempts_in(names: Iterable[str], prefix: str, shard: str, digest: str) -> list[int]:
    """The attempt numbers of this shard input's jobs among ``names`` (job names Bedrock lists)."""
    first = job_name(prefix, shard, digest, 1)
    found = []
    for name in names:
        if name == first:
            found.append(1)
        elif name.startswith(first + "-a") and name[len(first) + 2 :].isdigit():
            found.append(int(name[len(first) + 2 :]))
    return sorted(found)


def request_token(name: str, input_uri: str, output_uri: str) -> str:
    """Deterministic clientRequestToken for one request: a retried create returns the same job."""
    return validate_request_token(hashlib.sha256(f"{name}\n{input_uri}\n{output_uri}".encode()).hexdigest()[:40])
