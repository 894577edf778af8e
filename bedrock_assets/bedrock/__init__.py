"""What we know about the Bedrock batch API: job statuses, names and tokens, quotas, submission, the resource."""

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.bedrock.quotas import BatchQuotas, quotas_for
from bedrock_assets.bedrock.resource import BedrockBatchResource, CallCounter, JobSummary

__all__ = ["BatchQuotas", "BedrockBatchResource", "CallCounter", "JobStatus", "JobSummary", "quotas_for"]
