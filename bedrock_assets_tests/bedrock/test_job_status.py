"""Job statuses are declared once; the groups the pipeline acts on follow the documented service."""

from __future__ import annotations

from bedrock_assets.bedrock.job_status import JobStatus


def names(predicate) -> set[str]:
    return {s.value for s in JobStatus if predicate(s)}


def test_bedrock_statuses_are_the_documented_ones():
    assert set(JobStatus.bedrock_values()) == {
        "Submitted",
        "Validating",
        "Scheduled",
        "InProgress",
        "Stopping",
        "Completed",
        "PartiallyCompleted",
        "Failed",
        "Stopped",
        "Expired",
    }


def test_groups():
    assert names(lambda s: s.holds_slot) == {"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"}
    assert names(lambda s: s.is_terminal) == {
        "Completed",
        "PartiallyCompleted",
        "Failed",
        "Stopped",
        "Expired",
        "SubmitFailed",
    }
    assert names(lambda s: s.has_output) == {"Completed", "PartiallyCompleted"}
    assert names(lambda s: s.resubmittable) == {"Failed", "Stopped", "Expired", "SubmitFailed"}
    # waiting for a slot or mid-submission: neither holds a slot nor is finished
    assert not JobStatus.QUEUED.holds_slot and not JobStatus.SUBMITTING.is_terminal


def test_a_status_is_its_api_string():
    assert JobStatus("PartiallyCompleted") is JobStatus.PARTIALLY_COMPLETED and f"{JobStatus.FAILED}" == "Failed"
