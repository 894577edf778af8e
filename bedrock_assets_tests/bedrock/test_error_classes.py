"""Every error code is classified once: retriable (a new try can succeed) or final."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bedrock_assets.bedrock.error_classes import ErrorClass, classify, job_failure_is_transient, retriable_mask
from bedrock_assets.bedrock.job_status import JobStatus

RETRIABLE, FINAL = ErrorClass.RETRIABLE, ErrorClass.FINAL


@pytest.mark.parametrize(
    "code, message, expected",
    [
        ("429", "ThrottlingException: Too many tokens", RETRIABLE),
        ("500", "InternalServerException", RETRIABLE),
        ("503", "ServiceUnavailable", RETRIABLE),
        ("408", "Request timed out", RETRIABLE),
        ("RecordNotReturned", "job finished without an output line", RETRIABLE),
        ("UnparseableOutput", "line 3 is not JSON", RETRIABLE),
        ("JobExpired", "batch job Expired", RETRIABLE),
        ("JobFailed", "batch job Failed: Internal error while processing the job", RETRIABLE),
        ("JobFailed", "batch job Failed: Service unavailable, try again later", RETRIABLE),
        ("JobFailed", "batch job Failed: The input file has an invalid JSON line 3", FINAL),
        ("400", "ValidationException: max_tokens: Field required", FINAL),
        ("403", "AccessDeniedException", FINAL),
        ("422", "content filtered", FINAL),
        ("InvalidModelInput", "prompt is blank", FINAL),
        ("JobStopped", "batch job Stopped: Stop requested by user.", FINAL),
        ("JobSubmitFailed", "ValidationException: bad role", FINAL),
        (None, None, None),
    ],
)
def test_each_code_has_one_class(code, message, expected):
    assert classify(code, message) == expected


def test_the_mask_is_vectorized_and_false_for_rows_without_error():
    codes = pa.array([None, "429", "400", "JobFailed", "JobFailed"], pa.string())
    messages = pa.array([None, "x", "x", "Internal Server Error", None], pa.string())
    assert retriable_mask(codes, messages).to_pylist() == [False, True, False, True, False]


def test_only_expired_and_transient_failures_are_worth_a_new_job():
    assert job_failure_is_transient(JobStatus.EXPIRED, None)
    assert job_failure_is_transient(JobStatus.FAILED, "Internal error while processing the job")
    assert not job_failure_is_transient(JobStatus.FAILED, "Input file is not valid JSONL")
    assert not job_failure_is_transient(JobStatus.STOPPED, "internal error")  # a person stopped it
    assert not job_failure_is_transient(JobStatus.COMPLETED, None)


def test_a_retriable_code_without_a_message_is_still_retriable():
    codes = pa.array(["429", "RecordNotReturned", "JobFailed", "400"], pa.string())
    assert retriable_mask(codes, pa.nulls(4, pa.string())).to_pylist() == [True, True, False, False]
