"""One local stack per test package (and worker) for the local stack's own tests, with its knobs reset around each test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bedrock_assets.local_stack import LocalStack
from bedrock_assets_tests.local_stack.helpers import (
    DEFAULTS,
    make_client,
)


@pytest.fixture(scope="package")
def stack() -> Iterator[LocalStack]:
    with LocalStack(port=0, time_scale=0) as st:
        yield st


@pytest.fixture(autouse=True)
def reset_knobs(stack: LocalStack) -> Iterator[None]:
    stack.configure(**DEFAULTS)
    yield
    stack.configure(**DEFAULTS)


@pytest.fixture
def s3(stack: LocalStack) -> Any:
    return make_client(stack, "s3")


@pytest.fixture
def bedrock(stack: LocalStack) -> Any:
    return make_client(stack, "bedrock")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"bkt-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
