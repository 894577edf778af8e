"""Every state a shard's batch job can be in, declared once, with the groups the pipeline acts on.

Bedrock's own ``ModelInvocationJobStatus`` values, plus three states of ours around submission:
waiting for a free slot, submission in flight, and rejected by CreateModelInvocationJob.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    # ours, before Bedrock has a job
    QUEUED = "Queued"
    SUBMITTING = "Submitting"
    SUBMIT_FAILED = "SubmitFailed"
    # Bedrock's
    SUBMITTED = "Submitted"
    VALIDATING = "Validating"
    SCHEDULED = "Scheduled"
    IN_PROGRESS = "InProgress"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    PARTIALLY_COMPLETED = "PartiallyCompleted"
    FAILED = "Failed"
    STOPPED = "Stopped"
    EXPIRED = "Expired"

    @property
    def is_bedrock(self) -> bool:
        """A status the Bedrock API reports (not one of our submission states)."""
        return self not in _OURS

    @property
    def holds_slot(self) -> bool:
        """Counts against the model's concurrent-job quota (Submitted through Stopping)."""
        return self in _HOLDS_SLOT

    @property
    def is_terminal(self) -> bool:
        """Will not change again: Bedrock's end states, and a submission Bedrock refused."""
        return self in _TERMINAL

    @property
    def has_output(self) -> bool:
        """The job wrote output records worth reading."""
        return self in _HAS_OUTPUT

    @property
    def resubmittable(self) -> bool:
        """A new (paid) attempt may be created for the shard: the last one produced nothing more to wait for."""
        return self in _RESUBMITTABLE

    @classmethod
    def bedrock_values(cls) -> list[str]:
        return [s.value for s in cls if s.is_bedrock]


_OURS = frozenset({JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.SUBMIT_FAILED})
_HOLDS_SLOT = frozenset(
    {JobStatus.SUBMITTED, JobStatus.VALIDATING, JobStatus.SCHEDULED, JobStatus.IN_PROGRESS, JobStatus.STOPPING}
)
_HAS_OUTPUT = frozenset({JobStatus.COMPLETED, JobStatus.PARTIALLY_COMPLETED})
_TERMINAL = _HAS_OUTPUT | {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.EXPIRED, JobStatus.SUBMIT_FAILED}
_RESUBMITTABLE = frozenset({JobStatus.FAILED, JobStatus.STOPPED, JobStatus.EXPIRED, JobStatus.SUBMIT_FAILED})
