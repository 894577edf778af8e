"""What CreateModelInvocationJob and ListModelInvocationJobs accept: the service's request constraints.

botocore checks only required fields, types and minimums; the patterns, maximums and enums below are
the service's (its API reference and botocore's service model), so the emulator refuses what Bedrock
refuses, with a ``ValidationException`` naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .catalog import EMBEDDING_FAMILIES, batch_model_error, lookup
from .errors import EmulatorError

JOB_NAME_RE = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
TOKEN_RE = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
ROLE_ARN_RE = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
S3_URI_RE = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")
TAG_RE = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
INVOCATION_TYPES = ("InvokeModel", "Converse")
REQUIRED = ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig")


def validation_error(message: str) -> EmulatorError:
    return EmulatorError("ValidationException", message, 400)


def validate_create(body: Any) -> dict[str, Any]:
    """The CreateModelInvocationJob request with its defaults; ValidationException for what the service refuses."""
    if not isinstance(body, dict):
        raise validation_error("Request body must be a JSON object.")
    for field in REQUIRED:
        if body.get(field) in (None, ""):
            raise validation_error(
                f"1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
            )
    _check_names(body)
    invocation_type = _check_model(body)
    _check_s3_config(body, "inputDataConfig", "s3InputDataConfig")
    if body["inputDataConfig"]["s3InputDataConfig"].get("s3InputFormat", "JSONL") != "JSONL":
        raise validation_error("inputDataConfig.s3InputDataConfig.s3InputFormat: must be 'JSONL'")
    _check_s3_config(body, "outputDataConfig", "s3OutputDataConfig")
    timeout = body.get("timeoutDurationInHours", 168)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 24 <= timeout <= 168:
        raise validation_error(f"timeoutDurationInHours: {timeout} must be an integer between 24 and 168")
    _check_tags(body.get("tags") or [])
    return {
        **body,
        "clientRequestToken": body.get("clientRequestToken"),
        "modelInvocationType": invocation_type,
        "timeoutDurationInHours": timeout,
    }


def _check_names(body: dict[str, Any]) -> None:
    name = body["jobName"]
    if not isinstance(name, str) or not 1 <= len(name) <= 63 or not JOB_NAME_RE.fullmatch(name):
        raise validation_error(f"jobName: '{name}' must be 1-63 characters matching {JOB_NAME_RE.pattern}")
    token = body.get("clientRequestToken")
    if token is not None and (
        not isinstance(token, str) or not 1 <= len(token) <= 256 or not TOKEN_RE.fullmatch(token)
    ):
        raise validation_error(f"clientRequestToken: '{token}' must be 1-256 characters matching {TOKEN_RE.pattern}")
    role = body["roleArn"]
    if not isinstance(role, str) or len(role) > 2048 or not ROLE_ARN_RE.fullmatch(role):
        raise validation_error(f"roleArn: '{role}' is not a valid IAM role ARN")


def _check_model(body: dict[str, Any]) -> str:
    """The model accepts batch jobs of the invocation type; returns the type (InvokeModel by default)."""
    model_id = body["modelId"]
    if not isinstance(model_id, str) or not 1 <= len(model_id) <= 2048:
        raise validation_error(f"modelId: the provided model identifier '{model_id}' is invalid.")
    problem = batch_model_error(model_id)
    if problem:
        raise validation_error(problem)
    invocation_type = body.get("modelInvocationType") or "InvokeModel"
    if invocation_type not in INVOCATION_TYPES:
        raise validation_error(f"modelInvocationType: '{invocation_type}' must be one of {list(INVOCATION_TYPES)}")
    info = lookup(model_id)
    if invocation_type == "Converse" and info is not None and info.family in EMBEDDING_FAMILIES:
        raise validation_error(f"modelInvocationType: model '{model_id}' does not support Converse.")
    return invocation_type


def _check_s3_config(body: dict[str, Any], config: str, member: str) -> None:
    inner = (body[config] or {}).get(member) if isinstance(body[config], dict) else None
    field = f"{config}.{member}.s3Uri"
    if not isinstance(inner, dict) or not inner.get("s3Uri"):
        raise validation_error(f"{field}: Member must not be null")
    uri = inner["s3Uri"]
    if not isinstance(uri, str) or len(uri) > 1024 or not S3_URI_RE.fullmatch(uri):
        raise validation_error(f"{field}: '{uri}' is not a valid S3 URI")


def _check_tags(tags: Any) -> None:
    """The service's TagKey / TagValue constraints."""
    if not isinstance(tags, list) or not all(isinstance(t, dict) and "key" in t and "value" in t for t in tags):
        raise validation_error("tags: each tag must have 'key' and 'value'")
    for i, tag in enumerate(tags):
        key, value = str(tag["key"]), str(tag["value"])
        if not (1 <= len(key) <= 128 and TAG_RE.fullmatch(key)) or key.lower().startswith("aws:"):
            raise validation_error(
                f"1 validation error detected: Value at 'tags.{i + 1}.member.key' failed to "
                "satisfy constraint: Member must satisfy regular expression pattern: "
                "^[a-zA-Z0-9\\s._:/=+@-]*$ and not begin with aws:"
            )
        if len(value) > 256 or not TAG_RE.fullmatch(value):
            raise validation_error(
                f"1 validation error detected: Value at 'tags.{i + 1}.member.value' failed to "
                "satisfy constraint: Member must have length less than or equal to 256 and "
                "satisfy regular expression pattern: ^[a-zA-Z0-9\\s._:/=+@-]*$"
            )


def parse_time(value: str, field: str) -> float:
    """A ListModelInvocationJobs time filter (ISO 8601, or epoch seconds) as epoch seconds."""
    try:
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return float(value)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    except ValueError:
        raise validation_error(f"{field}: '{value}' is not a valid ISO 8601 timestamp") from None


def int_param(params: dict[str, Any], name: str, lo: int, hi: int, default: int | None) -> int | None:
    if params.get(name) in (None, ""):
        return default
    try:
        value = int(params[name])
    except (TypeError, ValueError):
        raise validation_error(f"{name}: must be an integer") from None
    if not lo <= value <= hi:
        raise validation_error(f"{name}: must be between {lo} and {hi}, got {value}")
    return value
