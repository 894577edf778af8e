"""bedrock-runtime ``InvokeModel`` and ``Converse`` answered synchronously by the synthetic models.

An answer is exactly the ``modelOutput`` a batch job writes for the same body and invocation type;
a body the batch job would answer with an error line gets a 400 ValidationException carrying the
same message. Fault knobs (shared with the batch emulator, see ``FaultConfig``):

- ``unavailable_until``: 503 ServiceUnavailableException until then.
- ``throttle_every``: every Nth runtime call gets ThrottlingException (429); runtime calls are
  counted apart from the batch API's.
- ``record_error_rate``: that fraction of calls fail, half with ThrottlingException (429), half with
  InternalServerException (500). The draw is keyed on (operation, model, body digest, how many times
  that same call was made before), so it is reproducible and a retried call draws afresh.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from .catalog import EMBEDDING_FAMILIES, SERVICE_TIER_VALUES, lookup, runtime_model_error
from .errors import EmulatorError
from .faults import FaultConfig
from .synthetic import SyntheticResult, synthesize_batch

OPERATIONS = ("InvokeModel", "Converse")
# Converse request members that only the runtime API has (botocore's bedrock-runtime model); they do
# not affect the synthetic answer, so they are set aside before the batch record validation.
RUNTIME_ONLY_CONVERSE_KEYS = frozenset(
    {
        "guardrailConfig",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "projectIdentifier",
    }
)
CONVERSE_UNSUPPORTED = (
    "This action doesn't support the model that you provided. Try again with a supported text or chat model."
)


def _unit_hash(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_tier(model_id: str, tier: str | None) -> None:
    """Refuse a service tier that is not a ServiceTierType value, ``reserved`` without a reservation, or a tier
    the model is not offered at: 400 ValidationException, as the service answers (its exact messages for the
    last case are not documented; these are ours)."""
    if tier is None:
        return
    if tier not in SERVICE_TIER_VALUES:
        raise EmulatorError(
            "ValidationException",
            f"The provided service tier is invalid: {tier!r} is not one of {SERVICE_TIER_VALUES}",
            400,
        )
    if tier == "reserved":
        raise EmulatorError("ValidationException", "Reservation not found.", 400)
    info = lookup(model_id)
    if info is not None and tier not in info.service_tiers:
        raise EmulatorError(
            "ValidationException", f"The model {info.model_id} does not support the {tier} service tier.", 400
        )


class RuntimeEmulator:
    """Answers InvokeModel / Converse and counts the calls per operation (``calls()``)."""

    def __init__(self, faults: FaultConfig, clock: Callable[[], float] = time.time) -> None:
        self.faults = faults
        self.clock = clock
        self._lock = threading.Lock()
        self._calls = dict.fromkeys(OPERATIONS, 0)
        self._errors = dict.fromkeys(OPERATIONS, 0)
        self._throttle_count = 0
        self._seen: dict[str, int] = {}
        self._tiers: dict[str, int] = {}

    def calls(self) -> dict[str, int]:
        """Runtime calls received so far per operation (errors included)."""
        with self._lock:
            return dict(self._calls)

    def errors(self) -> dict[str, int]:
        """Runtime calls answered with an error so far, per operation."""
        with self._lock:
            return dict(self._errors)

    def reset_counts(self) -> None:
        """Zero the call/error counters and forget which bodies were seen (fault draws restart)."""
        with self._lock:
            self._calls = dict.fromkeys(OPERATIONS, 0)
            self._errors = dict.fromkeys(OPERATIONS, 0)
            self._throttle_count = 0
            self._seen.clear()
            self._tiers.clear()

    def reset_throttle(self) -> None:
        """Restart the ``throttle_every`` count (done when the knob is set)."""
        with self._lock:
            self._throttle_count = 0

    def invoke_model(self, model_id: str, body: bytes, tier: str | None = None) -> SyntheticResult:
        """InvokeModel: the synthetic result for ``body`` (its ``output_json`` is the response body); ``tier``:
        the X-Amzn-Bedrock-Service-Tier header."""
        return self._call("InvokeModel", model_id, body, tier)

    def converse(self, model_id: str, body: bytes) -> SyntheticResult:
        """Converse: the synthetic result for the request (``output_json`` is the response document)."""
        try:
            tier = (json.loads(body or b"{}").get("serviceTier") or {}).get("type")
        except (ValueError, AttributeError):
            tier = None  # refused as malformed below
        return self._call("Converse", model_id, body, tier)

    def tiers(self) -> dict[str, int]:
        """Runtime calls answered so far per service tier (``default`` when the request named none)."""
        with self._lock:
            return dict(self._tiers)

    def _call(self, operation: str, model_id: str, body: bytes, tier: str | None = None) -> SyntheticResult:
        with self._lock:
            self._calls[operation] += 1
        try:
            check_tier(model_id, tier)
            result = self._answer(operation, model_id, body)
            with self._lock:
                self._tiers[tier or "default"] = self._tiers.get(tier or "default", 0) + 1
            return result
        except EmulatorError:
            with self._lock:
                self._errors[operation] += 1
            raise

    def _answer(self, operation: str, model_id: str, body: bytes) -> SyntheticResult:
        faults = self.faults
        if self.clock() < faults.unavailable_until:
            raise EmulatorError("ServiceUnavailableException", "Service is unavailable (emulated outage).", 503)
        with self._lock:
            self._throttle_count += 1
            throttled = faults.throttle_every and self._throttle_count % faults.throttle_every == 0
        if throttled:
            raise EmulatorError("ThrottlingException", "Rate exceeded (emulated throttling).", 429)
        problem = runtime_model_error(model_id)
        if problem:
            raise EmulatorError("ValidationException", problem, 400)
        info = lookup(model_id)
        if operation == "Converse" and info is not None and info.family in EMBEDDING_FAMILIES:
            raise EmulatorError("ValidationException", CONVERSE_UNSUPPORTED, 400)
        try:
            request: Any = json.loads(body or b"{}")
        except ValueError:
            raise EmulatorError(
                "ValidationException", "Malformed input request: the request body is not valid JSON.", 400
            ) from None
        model_input = request
        if operation == "Converse" and isinstance(request, dict):
            model_input = {k: v for k, v in request.items() if k not in RUNTIME_ONLY_CONVERSE_KEYS}
        (result,) = synthesize_batch(model_id, operation, [model_input], batch=False)
        if result.error is not None:
            raise EmulatorError("ValidationException", result.error, 400)
        self._inject_fault(operation, model_id, request)
        return result

    def _inject_fault(self, operation: str, model_id: str, request: Any) -> None:
        rate = self.faults.record_error_rate
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256("\x1f".join((operation, model_id, canonical)).encode()).hexdigest()
        with self._lock:
            attempt = self._seen.get(digest, 0)
            self._seen[digest] = attempt + 1
        if not rate or _unit_hash("error", digest, str(attempt)) >= rate:
            return
        if _unit_hash("code", digest, str(attempt)) < 0.5:
            raise EmulatorError(
                "ThrottlingException", "[emulated] Too many tokens, please wait before trying again.", 429
            )
        raise EmulatorError("InternalServerException", "[emulated] The model encountered an unexpected error.", 500)
