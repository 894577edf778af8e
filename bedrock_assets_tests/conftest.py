"""Shared fixtures: one embedded local stack per test session, fresh buckets and ledger tables per test.

Every test that uses the local stack is marked ``local_stack``, every test that runs ``dg`` or another
command in a subprocess is marked ``subprocess`` (those that run ``dg`` take the ``dg_command`` fixture):
``make fast`` runs the rest, the decisions and parsers, in seconds.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from bedrock_assets.components.bedrock_batch_pipeline import BedrockBatchPipeline
from bedrock_assets.local_stack import FaultConfig, LocalStack
from bedrock_assets.sample.seed import ensure_bucket, seed_sample
from bedrock_assets_tests import helpers
from bedrock_assets_tests.helpers import pipeline_defs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "stack" in fixtures:
            item.add_marker(pytest.mark.local_stack)
        if "dg_command" in fixtures:
            item.add_marker(pytest.mark.subprocess)


@pytest.fixture
def dg_command() -> Callable[..., subprocess.CompletedProcess]:
    """``dg`` of this virtualenv, run in a subprocess (in this repository unless ``cwd`` is given)."""
    return helpers.dg_command


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
        stack.configure(**FaultConfig().to_dict(), time_scale=0, metrics_seconds=60)
        stack.emulator.concurrency_limits.clear()
        bedrock = stack.client("bedrock")
        for status in ("Submitted", "Validating", "Scheduled", "InProgress"):
            for job in bedrock.list_model_invocation_jobs(statusEquals=status)["invocationJobSummaries"]:
                bedrock.stop_model_invocation_job(jobIdentifier=job["jobArn"])
        stack.emulator.expedite()
        bedrock.list_model_invocation_jobs(statusEquals="Stopping")  # observing them completes the stop


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


@pytest.fixture
def make_pipelines(stack: LocalStack, s3: Any, bucket: str, tmp_path: Path) -> Callable[..., tuple[Any, list]]:
    """Definitions of BedrockBatchPipeline components over a seeded sample (``rows``), with their own ledger."""

    def make(pipelines: list[dict[str, Any]], rows: int = 450) -> tuple[dg.Definitions, list[BedrockBatchPipeline]]:
        seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=rows)
        specs = [BedrockBatchPipeline.from_attributes(p, tmp_path) for p in pipelines]
        return pipeline_defs(specs, f"ledger-{uuid.uuid4().hex[:8]}"), specs

    return make
