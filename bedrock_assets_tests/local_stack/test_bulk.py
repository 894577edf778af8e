"""Bulk answers: byte for byte the one-by-one answers of the same records."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from bedrock_assets.local_stack import FaultConfig, jobs
from bedrock_assets.local_stack import bulk as bulk_answers
from bedrock_assets.local_stack.bulk import synthesize_bulk
from bedrock_assets.local_stack.jobs import answer_chunk
from bedrock_assets.local_stack.synthetic import synthesize_batch
from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.output_schema import OutputSchema
from bedrock_assets.records import derived_record_ids, request_lines
from bedrock_assets_tests.local_stack.helpers import (
    CLAUDE,
    NOVA,
    TITAN,
    claude_input,
)

SCHEMA = OutputSchema.parse({"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}})


TRICKY = [
    "plain",
    'a quote " and a backslash \\ and \\\\n',
    "tab\tnew\nline\r form\x0c back\x08",
    "é ✓ 😀 \u2028 \x7f",
    '"}]}],"system":"x',
    '\\"}]}]}',
    '","dimensions":256,"normalize":true}',
    " \n\t",
    "\u3000\xa0",
    "control \x01",
    "y" * 800_004,
    "z" * 50_001,
    "é" * 50_000,
    "Answer." + SCHEMA.instruction(),
]


WORDS = np.array('the quick brown fox é ü \\ " \n 😀 jumps over'.split(" "))


BULK_CASES = [  # model, invocation type, prompt, inference settings, whether the bulk path answers them
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), True),
    (CLAUDE, "InvokeModel", PromptSettings(template="Q: {text}", system='Be "brief" \\ ✓'), InferenceSettings(), True),
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}", system="s"), InferenceSettings(max_tokens=9), True),
    (TITAN, "InvokeModel", PromptSettings(input_column="text"), InferenceSettings(dimensions=256), True),
    (
        TITAN,
        "InvokeModel",
        PromptSettings(input_column="text"),
        InferenceSettings(dimensions=512, normalize=False),
        True,
    ),
    (TITAN, "InvokeModel", PromptSettings(input_column="text"), InferenceSettings(dimensions=1024), True),
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}", structured=SCHEMA), InferenceSettings(), False),
    (CLAUDE, "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(temperature=0.5), False),
    (CLAUDE, "Converse", PromptSettings(template="{text}", system="s"), InferenceSettings(), False),
    (NOVA, "InvokeModel", PromptSettings(template="{text}", structured=SCHEMA), InferenceSettings(), False),
    ("meta.llama3-3-70b-instruct-v1:0", "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), False),
    ("mistral.mistral-small-2402-v1:0", "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), False),
    ("mistral.mistral-large-2407-v1:0", "InvokeModel", PromptSettings(template="{text}"), InferenceSettings(), False),
    ("cohere.embed-english-v3", "InvokeModel", PromptSettings(input_column="text"), InferenceSettings(), False),
]


def rendered_lines(
    model: str, invocation: str, prompt: PromptSettings, inference: InferenceSettings
) -> tuple[list[bytes], list[bytes]]:
    """(request lines as the pipeline writes them for TRICKY and random texts, hand-written odd records)."""
    rng = np.random.default_rng(7)
    texts = TRICKY + [" ".join(rng.choice(WORDS, rng.integers(1, 30))) for _ in range(300)]
    lines, _ = request_lines(
        pa.table({"text": texts}), derived_record_ids(0, len(texts)), adapter_for(model, invocation, prompt, inference)
    )
    body = claude_input(1)
    odd = [
        json.dumps({"recordId": "spaced", "modelInput": body}),  # json.dumps's default separators
        json.dumps({"modelInput": body}),  # a made-up recordId
        json.dumps({"recordId": "", "modelInput": body}, separators=(",", ":")),
        json.dumps({"recordId": "ïd", "modelInput": body}, separators=(",", ":"), ensure_ascii=False),
        json.dumps({"recordId": "extra", "modelInput": body, "x": 1}, separators=(",", ":")),
        '{"recordId":"u","modelInput":{"inputText":"\\u00e9t\\u00E9","dimensions":256,"normalize":true}}',
        '{"recordId":"slash","modelInput":{"inputText":"a\\/b","dimensions":256,"normalize":true}}',
        json.dumps({"recordId": "v1", "modelInput": {"inputText": "bare"}}, separators=(",", ":")),
        json.dumps({"recordId": "mt", "modelInput": claude_input(1, max_tokens=10**20)}, separators=(",", ":")),
    ]
    return [line.encode() for line in lines.to_pylist() if line is not None], [line.encode() for line in odd]


@pytest.mark.parametrize(
    "faults", [FaultConfig(), FaultConfig(record_error_rate=0.2, drop_rate=0.1)], ids=["", "faults"]
)
@pytest.mark.parametrize("model, invocation, prompt, inference, in_bulk", BULK_CASES)
def test_bulk_answers_are_the_one_by_one_answers(
    model: str,
    invocation: str,
    prompt: PromptSettings,
    inference: InferenceSettings,
    in_bulk: bool,
    faults: FaultConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered, odd = rendered_lines(model, invocation, prompt, inference)
    rows = np.random.default_rng(3).permutation(len(rendered) + len(odd))  # a shuffled chunk
    chunk = [(rendered + odd)[i] for i in rows]
    job = {"modelId": model, "modelInvocationType": invocation, "jobName": "bulk-check"}
    singly: dict[bool, list] = {True: [], False: []}
    runs = {}
    for bulk in (True, False):

        def one_by_one(model_id: str, invocation_type: str, inputs: list, bulk: bool = bulk) -> list:
            singly[bulk].extend(inputs)
            return synthesize_batch(model_id, invocation_type, inputs)

        monkeypatch.setattr(jobs, "synthesize_batch", one_by_one)
        totals: Counter[str] = Counter()
        runs[bulk] = bytes(answer_chunk(job, "in.jsonl", chunk, rows, faults, totals, bulk=bulk)), totals
    assert runs[True] == runs[False]
    if in_bulk:  # the odd records and a few TRICKY ones are answered one by one
        assert len(singly[True]) < 0.1 * len(singly[False])
    else:
        assert singly[True] == singly[False]


def test_bulk_texts_that_need_more_draws_come_from_the_one_by_one_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk_answers, "_DRAWS", 30)  # too few for most texts
    bodies = [claude_input(i, max_tokens=1 + i % 150) for i in range(300)]
    texts = pa.array([json.dumps(body, separators=(",", ":")) for body in bodies])
    answers = synthesize_bulk(CLAUDE, "InvokeModel", texts)
    results = synthesize_batch(CLAUDE, "InvokeModel", bodies)
    assert answers.rows.tolist() == list(range(300))
    assert answers.outputs.to_pylist() == [r.output_json for r in results]
    assert answers.output_tokens.tolist() == [r.output_tokens for r in results]
