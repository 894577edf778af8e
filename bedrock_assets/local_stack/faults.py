"""Fault-injection knobs for the Bedrock batch-inference emulator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FaultConfig:
    """Knobs that make the emulator misbehave on purpose (all off by default).

    Batch jobs:

    - ``record_error_rate``: fraction of records answered with an error line (half 429, half 500
      model errors). Drawn from a hash of (job name, recordId): reproducible across runs, and a retry
      job (another name) gets an independent draw for the same record.
    - ``drop_rate``: fraction of records silently absent from the output (not processed); drawn
      like ``record_error_rate`` from (job name, recordId).
    - ``fail_jobs_matching``: jobs whose name contains this substring fail at the InProgress step.
    - ``expire_jobs_matching``: jobs whose name contains this substring expire while Scheduled.
    - ``throttle_every``: every Nth emulator API call gets ThrottlingException (0 = off).
    - ``min_records``: minimum records per job (the real service requires 100).
    - ``unavailable_until``: until this epoch time, every batch API call answers 503
      ServiceUnavailableException (an outage).
    - ``outage_seconds``: an outage of this many seconds begins at the next batch API call (it sets
      ``unavailable_until`` then and goes back to 0): the next caller meets it however late it comes.
    - ``lose_create_responses``: the next N CreateModelInvocationJob calls take effect (the job exists)
      but answer 500 InternalServerException, replays of the same clientRequestToken included: the
      answer of a create that worked is lost.
    - ``create_delay``: seconds a CreateModelInvocationJob waits after taking effect before it
      answers (a client can be killed while its create is in flight).
    - ``hold_jobs_matching``: jobs whose name contains this substring stay Scheduled (the service's
      queue never reaches them) until stopped or expired.
    - ``stall_jobs_matching``: jobs whose name contains this substring reach InProgress and then
      process nothing more (processedRecordCount stays where it is) until stopped.
    - ``slow_jobs_matching`` / ``slow_factor``: jobs whose name contains the substring take
      ``slow_factor`` times as long InProgress (their processed count grows that much more slowly).

    While InProgress a job's processedRecordCount grows with the time it has been InProgress (a
    steady rate that ends at the total when the phase ends), as the service reports progress.

    bedrock-runtime InvokeModel / Converse (see ``runtime.py``): ``unavailable_until`` (503),
    ``throttle_every`` (its own count of runtime calls) and ``record_error_rate`` (per call: half
    ThrottlingException 429, half InternalServerException 500, drawn from the body digest and how
    often that same call came before, so a retry can succeed).
    """

    record_error_rate: float = 0.0
    drop_rate: float = 0.0
    fail_jobs_matching: str | None = None
    expire_jobs_matching: str | None = None
    throttle_every: int = 0
    min_records: int = 100
    unavailable_until: float = 0.0
    outage_seconds: float = 0.0
    lose_create_responses: int = 0
    create_delay: float = 0.0
    hold_jobs_matching: str | None = None
    stall_jobs_matching: str | None = None
    slow_jobs_matching: str | None = None
    slow_factor: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Return the knobs as a JSON-friendly dict."""
        return asdict(self)

    def update(self, **knobs: Any) -> None:
        """Set the given knobs, validating names and coercing types."""
        known = {f.name: f for f in fields(self)}
        for name, value in knobs.items():
            if name not in known:
                raise ValueError(f"unknown fault knob: {name}")
            if name in ("unavailable_until", "outage_seconds", "create_delay"):
                value = float(value)
            elif name == "slow_factor":
                value = float(value)
                if value < 1.0:
                    raise ValueError("slow_factor must be >= 1")
            elif name in ("record_error_rate", "drop_rate"):
                value = float(value)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be within [0, 1]")
            elif name in ("throttle_every", "min_records", "lose_create_responses"):
                value = int(value)
                if value < 0:
                    raise ValueError(f"{name} must be >= 0")
            elif value is not None:
                value = str(value) or None
            setattr(self, name, value)

    def matches(self, knob: str, job_name: str) -> bool:
        """Whether a ``*_jobs_matching`` knob is set and names this job."""
        pattern = getattr(self, knob)
        return bool(pattern) and pattern in job_name

    @classmethod
    def names(cls) -> set[str]:
        """Names of all knobs."""
        return {f.name for f in fields(cls)}
