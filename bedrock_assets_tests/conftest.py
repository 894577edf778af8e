"""Shared fixtures: one embedded local stack per test session, fresh buckets and ledger tables per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from bedrock_assets.components.bedrock_batch_pipeline import BedrockBatchPipeline, build_pipeline_defs
from bedrock_assets.ledger import JobLedgerResource
from bedrock_assets.local_stack import FaultConfig, LocalStack
from bedrock_assets.resources import bedrock_resources
from bedrock_assets.runner import RunSummary, run_pipelines
from bedrock_assets.sample.seed import ensure_bucket, seed_sample
from bedrock_assets.spec import PipelineSpec, parse_pipeline

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatchInference"
# no retry rounds and no automatic resubmission: failures stay as they happened
NO_RECOURSE = {"max_rounds": 0, "max_job_attempts": 1}


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as mp:
        with LocalStack(port=0, time_scale=0) as local:
            for key, value in local.env().items():
                mp.setenv(key, value)
            for key in (
                "AWS_PROFILE",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL_BEDROCK",
                "AWS_ENDPOINT_URL_DYNAMODB",
                "BEDROCK_ASSETS_LEDGER_TABLE",
            ):
                mp.delenv(key, raising=False)
            yield local


@pytest.fixture(autouse=True)
def _reset_stack(request: pytest.FixtureRequest) -> Iterator[None]:
    """Undo a test's fault knobs and stop its jobs still in flight (they would hold model slots)."""
    yield
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        stack.configure(**FaultConfig().to_dict(), time_scale=0)
        stack.emulator.concurrency_limits.clear()
        bedrock = stack.client("bedrock")
        for status in ("Submitted", "Validating", "Scheduled", "InProgress"):
            for job in bedrock.list_model_invocation_jobs(statusEquals=status)["invocationJobSummaries"]:
                bedrock.stop_model_invocation_job(jobIdentifier=job["jobArn"])
        stack.emulator.expedite()
        bedrock.list_model_invocation_jobs(statusEquals="Stopping")  # observing them completes the stop


def run(defs: dg.Definitions, spec: PipelineSpec, instance: dg.DagsterInstance) -> RunSummary:
    """run_pipelines with fast polling and a timeout that fails a stuck test instead of hanging it."""
    (summary,) = run_pipelines(defs, [spec], instance, poll_seconds=0.05, timeout_seconds=120, log=lambda _: None)
    return summary


@pytest.fixture
def s3(stack: LocalStack) -> Any:
    return boto3.client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, name)
    return name


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    # in memory: runs, events and sensor ticks as a sqlite instance keeps them, without a file per write
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def pipeline_dict(name: str, bucket: str, *, model: str = CLAUDE, **overrides: Any) -> dict[str, Any]:
    """Valid pipeline attributes (a defs.yaml's ``attributes:``) over the sample dataset in ``bucket``."""
    spec: dict[str, Any] = {
        "name": name,
        "source": {"uri": f"s3://{bucket}/raw/sample.parquet"},
        "model": {"id": model},
        "output_uri": f"s3://{bucket}/out/{name.replace('_', '-')}",
        "role_arn": ROLE,
        "shards": {"max_records": 200},
    }
    if model == TITAN:
        spec["prompt"] = {"input_column": "source"}
        spec["inference"] = {"dimensions": 256}
    else:
        spec["prompt"] = {"template": "Task: {task}\n\n{source}", "system": "Answer briefly."}
    spec.update(overrides)
    return spec


def one_spec(data: dict[str, Any]) -> PipelineSpec:
    return parse_pipeline(data)


def pipeline_defs(specs: list[PipelineSpec], ledger_table: str) -> dg.Definitions:
    resources = bedrock_resources(bedrock_ledger=JobLedgerResource(table_name=ledger_table))
    return dg.Definitions.merge(*(build_pipeline_defs(s) for s in specs), dg.Definitions(resources=resources))


@pytest.fixture
def make_pipelines(stack: LocalStack, s3: Any, bucket: str, tmp_path: Path) -> Callable[..., tuple[Any, list]]:
    """Definitions of BedrockBatchPipeline components over a seeded sample (``rows``), with their own ledger."""

    def make(pipelines: list[dict[str, Any]], rows: int = 450) -> tuple[dg.Definitions, list[BedrockBatchPipeline]]:
        seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=rows)
        specs = [BedrockBatchPipeline.from_attributes(p, tmp_path) for p in pipelines]
        return pipeline_defs(specs, f"ledger-{uuid.uuid4().hex[:8]}"), specs

    return make


def ledger_of(defs: dg.Definitions) -> Any:
    return defs.resources["bedrock_ledger"].get_ledger()


def tick(defs: dg.Definitions, spec: PipelineSpec, instance: dg.DagsterInstance) -> dg.SensorResult:
    """One evaluation of the pipeline's completion sensor, as the daemon makes it."""
    sensor = defs.resolve_sensor_def(f"{spec.name}__job_completion")
    return sensor(dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs))
