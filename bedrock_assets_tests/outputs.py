"""Output lines and input rows as Bedrock and raw_dataset write them, for parser and merge tests."""

from __future__ import annotations

import json

import pyarrow as pa

from bedrock_assets.bedrock.job_status import JobStatus
from bedrock_assets.graph.batch_job_outputs import OutputParser
from bedrock_assets.ledger import JobAttempt
from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for


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
