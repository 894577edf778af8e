"""Helpers shared by the tests: pipeline attributes and definitions over the local stack, one sensor tick,
Bedrock's output lines and the rows raw_dataset writes, a user's own dg project, and a foreign job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.sensor_definition import SensorExecutionData

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.components.bedrock_batch_pipeline import build_pipeline_defs
from bedrock_assets.components.loading import load_pipelines
from bedrock_assets.ledger import JobAttempt, JobLedgerResource
from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.output_lines import OutputParser
from bedrock_assets.pipeline import Step
from bedrock_assets.resources import bedrock_resources
from bedrock_assets.runner import RunSummary, run_pipelines
from bedrock_assets.spec import PipelineSpec, SpecError, parse_pipeline
from bedrock_assets.storage import S3Access
from bedrock_assets.uris import parse_s3_uri

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
CLAUDE_45 = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # structured outputs (output_config / outputConfig)
TITAN = "amazon.titan-embed-text-v2:0"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatchInference"
# no retry rounds and no automatic resubmission: failures stay as they happened
NO_RECOURSE = {"max_rounds": 0, "max_job_attempts": 1}
ROOT = Path(__file__).resolve().parent.parent  # this repository: a dg project


# ---- pipelines on the local stack ------------------------------------------------------------------


def run(defs: dg.Definitions, spec: PipelineSpec, instance: dg.DagsterInstance) -> RunSummary:
    """run_pipelines with fast polling and a timeout that fails a stuck test instead of hanging it."""
    (summary,) = run_pipelines(defs, [spec], instance, poll_seconds=0.05, timeout_seconds=120, log=lambda _: None)
    return summary


def pipeline_dict(name: str, bucket: str, *, model: str = CLAUDE, **overrides: Any) -> dict[str, Any]:
    """Valid pipeline attributes (a defs.yaml's ``attributes:``) over the sample dataset in ``bucket``."""
    spec: dict[str, Any] = {
        "name": name,
        "source": {"uri": f"s3://{bucket}/raw/sample.parquet"},
        "model": {"id": model},
        "output_uri": f"s3://{bucket}/out/{name.replace('_', '-')}",
        "role_arn": ROLE,
        "shards": {"max_records": 200},
        # the canary (3 on-demand calls before the first job) is tested on its own (bedrock/test_canary.py,
        # test_cli.py) and on the sample pipelines (make demo, test_daemon_path); off here, where tests count
        # calls, attempts and costs of what they set out to test
        "canary": {"records": 0},
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


def ledger_of(defs: dg.Definitions) -> Any:
    return defs.resources["bedrock_ledger"].get_ledger()


def tick(
    defs: dg.Definitions, spec: PipelineSpec, instance: dg.DagsterInstance, cursor: str | None = None
) -> SensorExecutionData:
    """One evaluation of the pipeline's completion sensor, as the daemon makes it (``evaluate_tick`` checks each
    run request against the sensor's targets, as the daemon does)."""
    sensor = defs.resolve_sensor_def(f"{spec.name}__job_completion")
    with partition_loading_context(dynamic_partitions_store=instance):  # as the daemon wraps a tick
        return sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs, cursor=cursor)
        )


def step_of(spec: PipelineSpec, defs: dg.Definitions | None = None) -> Step:
    """The pipeline as a step of it sees it, with S3 from the standard configuration (the local stack)."""
    bedrock = defs.resources["bedrock"] if defs is not None else None
    return Step.of(spec, S3Access(boto3.client("s3")), bedrock)


def foreign_job(bucket: str, name: str) -> str:
    """A job of the same model that some other team submitted (not in our ledger)."""
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=bucket,
        Key=f"other/{name}.jsonl",
        Body=b"\n".join(
            json.dumps(
                {
                    "recordId": f"R{i:011d}",
                    "modelInput": {
                        "anthropic_version": "bedrock-2023-05-31",
                        "max_tokens": 5,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                }
            ).encode()
            for i in range(100)
        ),
    )
    return boto3.client("bedrock").create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=CLAUDE,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/other/{name}.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/other-out/"}},
    )["jobArn"]


def read_parquet(s3: Any, uri: str, tmp_path: Path, name: str = "read.parquet") -> pa.Table:
    """A Parquet object (a merged dataset, a merged shard) downloaded and read whole."""
    loc = parse_s3_uri(uri)
    path = tmp_path / name
    s3.download_file(loc.bucket, loc.key, str(path))
    return pq.read_table(path)


# ---- defs.yaml files -----------------------------------------------------------------------------

COMPONENT = "bedrock_assets.components.BedrockBatchPipeline"


def write_defs(folder, attributes, type_name=COMPONENT):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defs.yaml").write_text(yaml.safe_dump({"type": type_name, "attributes": attributes}))
    return folder / "defs.yaml"


def spec_error(tmp_path, **overrides) -> str:
    attributes = pipeline_dict("p1", "bkt", **overrides)
    path = write_defs(tmp_path / "p1", attributes)
    with pytest.raises(SpecError) as info:
        load_pipelines(path)
    assert str(path) in str(info.value)
    return str(info.value)


# ---- ledger attempts -----------------------------------------------------------------------------

CUSTOM_PRICE = {"my.model-v1": {"batch_input": 0.001, "batch_output": 0.002}}  # price_overrides of my.model-v1


def priced_attempt(shard: str, arn: str | None, tokens: tuple[int, int] | None = None, worst: float | None = None):
    """An attempt of model ``my.model-v1``: finished with its tokens, else in progress (with its worst case)."""
    return JobAttempt(
        "p", shard, 1, f"p-{shard}", "d", "my.model-v1", 100, "s3://b/i", "s3://b/o",
        JobStatus.COMPLETED if tokens else JobStatus.IN_PROGRESS, arn,
        input_tokens=tokens[0] if tokens else None, output_tokens=tokens[1] if tokens else None, worst_usd=worst,
    )  # fmt: skip


# ---- output lines and input rows ----------------------------------------------------------------


def claude():
    return adapter_for(
        "anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel", PromptSettings(template="{q}"), InferenceSettings()
    )


def ok_line(rid: str, text: str) -> bytes:
    return json.dumps(
        {
            "recordId": rid,
            "modelInput": {},
            "modelOutput": {
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 2},
            },
        }
    ).encode()


def err_line(rid: str) -> bytes:
    return json.dumps(
        {"recordId": rid, "modelInput": {}, "error": {"errorCode": 400, "errorMessage": "Malformed input request"}}
    ).encode()


def input_rows(n: int, rejected: set[int] = frozenset()) -> pa.Table:
    return pa.table(
        {
            "q": [f"question {i}" for i in range(n)],
            "record_id": [f"id{i}" for i in range(n)],
            "source_file": ["f.parquet"] * n,
            "source_row": list(range(n)),
            "_request": [None if i in rejected else "{}" for i in range(n)],
            "_input_error": ["ValueError: empty" if i in rejected else None for i in range(n)],
        }
    )


def parse(lines, expected):
    parser = OutputParser(claude(), expected_ids=expected)
    table = pa.Table.from_batches(
        [parser.parse_chunk(b"\n".join(lines[:2])), parser.parse_chunk(b"\n".join(lines[2:]))]
    )
    return parser, table


def job(shard: str, status: JobStatus, message: str | None = None, arn: str | None = "arn:job") -> JobAttempt:
    return JobAttempt(
        pipeline="p",
        shard=shard,
        attempt=1,
        job_name=f"p-{shard}-abc",
        input_digest="d",
        model_id="m",
        records=0,
        input_uri="",
        output_uri="",
        status=status,
        job_arn=arn,
        message=message,
    )


# ---- a user's own dg project ---------------------------------------------------------------------

PYPROJECT = """\
[project]
name = "userproj"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["bedrock_assets"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "userproj"
"""

DEFINITIONS = """\
from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def new_project(parent: Path) -> Path:
    """What `create-dagster project userproj` lays out, minus its virtualenv (this one's is used)."""
    root = parent / "userproj"
    (root / "userproj" / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "userproj" / "__init__.py").write_text("")
    (root / "userproj" / "defs" / "__init__.py").write_text("")
    (root / "userproj" / "definitions.py").write_text(DEFINITIONS)
    return root


def dg_command(
    *args: str, cwd: Path = ROOT, env: dict | None = None, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """``dg`` of this virtualenv in a subprocess, with ``env`` added to this environment and ``unset`` taken out."""
    dg_exe = Path(sys.executable).parent / "dg"
    environment = {k: v for k, v in os.environ.items() if k not in unset} | {"VIRTUAL_ENV": sys.prefix, **(env or {})}
    return subprocess.run([str(dg_exe), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=180)


class S3Calls:
    """GetObject calls a client makes: HTTP status and bytes received."""

    def __init__(self, client) -> None:
        self.gets: list[tuple[int, int]] = []
        client.meta.events.register("after-call.s3.GetObject", self._record)

    def _record(self, http_response, **_) -> None:
        self.gets.append((http_response.status_code, int(http_response.headers.get("content-length") or 0)))


def dead_owner() -> str:
    """The owner id of a process of this host that has ended."""
    from bedrock_assets.processes import HOST

    child = subprocess.run(
        [sys.executable, "-c", "import bedrock_assets.processes as p; print(p.OWNER)"], capture_output=True, text=True
    )
    owner = child.stdout.strip()
    assert owner.startswith(f"{HOST}:")
    return owner
