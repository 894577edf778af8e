"""Which failed records and jobs are worth another (paid) try: every error code classified once.

Bedrock never retries a record. A record error is **retriable** when trying the same request again
can succeed: throttling (429), timeouts (408), server errors (5xx), a record the job never returned,
output we could not parse or that does not match the output schema, every record of a job that Expired or failed
for a transient reason, and the records a deadline's batch cutoff stopped before their job processed them.
Everything else is **final**: the request itself is wrong (4xx validation), the content was
filtered, we refused it before submission, a person stopped the job, or a structured answer was cut
off at the token limit (the same body would be cut off again; ``to_resend`` sends it once more with a
larger max_tokens only when the pipeline's ``retry.truncated_max_tokens`` asks for it).
"""

from __future__ import annotations

import re
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.bedrock.job_status import JobStatus

# error codes we assign to rows (Bedrock's own per-record codes are kept as they come, e.g. "429")
INVALID_INPUT = "InvalidModelInput"  # refused before submission
NOT_RETURNED = "RecordNotReturned"  # the job finished without an output line for the record
UNPARSEABLE = "UnparseableOutput"  # an output line we could not read
INVALID_STRUCTURED = "InvalidStructuredOutput"  # an answer that does not match the pipeline's output_schema
# a structured answer cut off at the token limit: final, since the same body is cut off again (a retry round
# resends it only with a larger max_tokens, when retry.truncated_max_tokens asks for that)
TRUNCATED_STRUCTURED = "TruncatedStructuredOutput"
JOB_FAILED = "JobFailed"
JOB_EXPIRED = "JobExpired"
# a record the deadline's batch cutoff stopped its job before it was processed: answered on demand next
STOPPED_AT_CUTOFF = "StoppedAtCutoff"

# A job failure message that reads like the service's trouble, not the input's.
_TRANSIENT_MESSAGE = re.compile(
    r"internal (server )?error|internalserver|service ?unavailable|throttl|timed? ?out|try again|capacity|"
    r"temporar",
    re.IGNORECASE,
)
_RETRIABLE_CODES = frozenset(
    {"429", "408", NOT_RETURNED, UNPARSEABLE, INVALID_STRUCTURED, JOB_EXPIRED, STOPPED_AT_CUTOFF}
)
_SERVER_ERROR = r"^5\d\d$"


class ErrorClass(StrEnum):
    RETRIABLE = "retriable"
    FINAL = "final"


def job_failure_is_transient(status: JobStatus, message: str | None) -> bool:
    """A job that produced nothing for a reason that may not recur: it Expired in the queue, or Failed
    with a message naming the service's trouble (internal error, unavailable, throttled, timed out)."""
    if status is JobStatus.EXPIRED:
        return True
    return status is JobStatus.FAILED and bool(_TRANSIENT_MESSAGE.search(message or ""))


def classify(code: str | None, message: str | None = None) -> ErrorClass | None:
    """The class of one row's error (None for a row without error)."""
    if code is None:
        return None
    retriable = retriable_mask(pa.array([code], pa.string()), pa.array([message], pa.string()))
    return ErrorClass.RETRIABLE if retriable[0].as_py() else ErrorClass.FINAL


def retriable_mask(codes: pa.Array | pa.ChunkedArray, messages: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True where a row's error is retriable (False for rows without error and for final errors)."""
    codes = pc.cast(codes, pa.string())
    by_code = pc.or_(
        pc.is_in(codes, value_set=pa.array(sorted(_RETRIABLE_CODES), pa.string())),
        pc.match_substring_regex(codes, _SERVER_ERROR),
    )
    failed_job = pc.and_kleene(  # a row without message is decided by its code alone
        pc.equal(codes, JOB_FAILED),
        pc.match_substring_regex(pc.cast(messages, pa.string()), _TRANSIENT_MESSAGE.pattern, ignore_case=True),
    )
    return pc.fill_null(pc.or_kleene(pc.fill_null(by_code, False), pc.fill_null(failed_job, False)), False)


def to_resend(
    codes: pa.Array | pa.ChunkedArray,
    messages: pa.Array | pa.ChunkedArray,
    raised: pa.Array | pa.ChunkedArray | None = None,
    resend_truncated: bool = False,
) -> pa.Array:
    """The rows a retry round sends again: retriable errors and, with ``resend_truncated``, structured answers
    cut off at the token limit whose request was not raised already (``raised``: the max_tokens each row's
    request was raised to, null where it was not)."""
    mask = retriable_mask(codes, messages)
    if not resend_truncated:
        return mask
    truncated = pc.fill_null(pc.equal(pc.cast(codes, pa.string()), TRUNCATED_STRUCTURED), False)
    if raised is not None:
        truncated = pc.and_(truncated, pc.is_null(raised))
    return pc.or_(mask, truncated)
