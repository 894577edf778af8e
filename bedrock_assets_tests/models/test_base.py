"""InvokeModel families beyond Claude and Titan V2: Nova, Llama, Mistral, Cohere Embed v3, Titan V1.

Per family: the body built from a row is the documented one (written out by hand), malformed bodies
and rows are refused before submission naming the field, the local stack's answer parses into the
right columns and token counts, and a pipeline runs end to end on the local stack.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from bedrock_assets.local_stack.synthetic import synthesize_batch
from bedrock_assets.models import InferenceSettings, PromptSettings, adapter_for
from bedrock_assets.output_lines import OutputParser
from bedrock_assets.output_schema import OutputSchema
from bedrock_assets.records import prepare_batch
from bedrock_assets.sources import SourceBatch, SourceFile
from bedrock_assets_tests.helpers import pipeline_dict, read_parquet, run
from bedrock_assets_tests.models.oracles import (
    COHERE,
    LLAMA3,
    LLAMA4,
    MISTRAL,
    MISTRAL_CHAT,
    NOVA,
    NOVA2,
    ROW,
    TITAN_V1,
    build,
    validate,
)

TEXT = PromptSettings(template="[{task}] {source}", system="Be brief.")
EMBED = PromptSettings(input_column="source")
SAMPLING = InferenceSettings(max_tokens=64, temperature=0.1, top_p=0.9)
WITH_STOP = InferenceSettings(max_tokens=64, temperature=0.1, top_p=0.9, stop=("\n\n",))

# (model, prompt, inference, the documented body for ROW)
DOCUMENTED = {
    "nova": (
        NOVA,
        TEXT,
        WITH_STOP,
        {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": "[arith] What is 2+2?"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.1, "topP": 0.9, "stopSequences": ["\n\n"]},
        },
    ),
    "nova-2": (
        NOVA2,
        PromptSettings(template="{source}"),
        InferenceSettings(max_tokens=32),
        {
            "messages": [{"role": "user", "content": [{"text": "What is 2+2?"}]}],
            "inferenceConfig": {"maxTokens": 32},
        },
    ),
    "llama3": (
        LLAMA3,
        TEXT,
        SAMPLING,
        {
            "prompt": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n[arith] What is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            "max_gen_len": 64,
            "temperature": 0.1,
            "top_p": 0.9,
        },
    ),
    "llama4": (
        LLAMA4,
        PromptSettings(template="{source}"),
        InferenceSettings(max_tokens=256),
        {
            "prompt": "<|begin_of_text|><|header_start|>user<|header_end|>\n\nWhat is 2+2?<|eot|>"
            "<|header_start|>assistant<|header_end|>\n\n",
            "max_gen_len": 256,
        },
    ),
    "mistral": (
        MISTRAL,
        TEXT,
        WITH_STOP,
        {
            "prompt": "<s>[INST] Be brief.\n\n[arith] What is 2+2? [/INST]",
            "max_tokens": 64,
            "temperature": 0.1,
            "top_p": 0.9,
            "stop": ["\n\n"],
        },
    ),
    "mistral-chat": (
        MISTRAL_CHAT,
        TEXT,
        SAMPLING,
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "[arith] What is 2+2?"},
            ],
            "max_tokens": 64,
            "temperature": 0.1,
            "top_p": 0.9,
        },
    ),
    "cohere": (
        COHERE,
        EMBED,
        InferenceSettings(input_type="search_query", truncate="END"),
        {"texts": ["What is 2+2?"], "input_type": "search_query", "truncate": "END", "embedding_types": ["float"]},
    ),
    "titan-v1": (TITAN_V1, EMBED, InferenceSettings(), {"inputText": "What is 2+2?"}),
}


def adapter(name: str):
    model, prompt, inference, _ = DOCUMENTED[name]
    return adapter_for(model, "InvokeModel", prompt, inference)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_the_body_built_from_a_row_is_the_documented_one(name):
    a = adapter(name)
    body = build(a, ROW)
    assert body == DOCUMENTED[name][3]
    validate(a, body)


LABELS = OutputSchema.parse({"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]})
SERVICE_CASES = [(model, "InvokeModel", prompt) for model, prompt, _, _ in DOCUMENTED.values()] + [
    (model, invocation, PromptSettings(template=TEXT.template, system=TEXT.system, structured=LABELS))
    for model in (
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        NOVA,
        LLAMA3,
    )
    for invocation in ("InvokeModel", "Converse")
]


@pytest.mark.parametrize("model, invocation, prompt", SERVICE_CASES)
def test_every_body_we_build_is_one_the_service_takes(model, invocation, prompt):
    """The local stack checks a record as Bedrock does: each family's body, plain or structured, in both
    invocation types, passes that check (and a Converse body never carries tools)."""
    a = adapter_for(model, invocation, prompt, InferenceSettings(max_tokens=64))
    body = build(a, ROW)
    (result,) = synthesize_batch(model, invocation, [body])
    assert result.error is None, result.error
    assert invocation == "InvokeModel" or "toolConfig" not in body


def test_every_family_is_registered_for_invoke_model_and_profiles_and_arns():
    families = {
        "eu.amazon.nova-pro-v1:0": "amazon-nova",
        "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-3-70b-instruct-v1:0": "meta-llama",
        "mistral.mixtral-8x7b-instruct-v0:1": "mistral-completion",
        "mistral.mistral-large-2402-v1:0": "mistral-completion",
        "us.mistral.mistral-large-2407-v1:0": "mistral-chat",
        "cohere.embed-multilingual-v3": "cohere-embed-v3",
        "amazon.titan-embed-text-v1": "amazon-titan-embed-v1",
    }
    for model, family in families.items():
        prompt = EMBED if "embed" in model else TEXT
        assert adapter_for(model, "InvokeModel", prompt, InferenceSettings()).family == family
    # Converse keeps working for the text families
    for model in (NOVA, LLAMA3, MISTRAL, MISTRAL_CHAT):
        assert adapter_for(model, "Converse", TEXT, InferenceSettings()).family == "converse"
    with pytest.raises(ValueError, match="has no InvokeModel adapter"):
        adapter_for("amazon.nova-canvas-v1:0", "InvokeModel", TEXT, InferenceSettings())


@pytest.mark.parametrize(
    "model, prompt, inference, field",
    [
        (LLAMA3, TEXT, InferenceSettings(stop=("END",)), "inference.stop"),
        (LLAMA4, TEXT, InferenceSettings(max_tokens=4096), "inference.max_tokens must be at most 2048"),
        (MISTRAL_CHAT, TEXT, InferenceSettings(stop=("END",)), "inference.stop"),
        ("mistral.mixtral-8x7b-instruct-v0:1", TEXT, InferenceSettings(max_tokens=8192), "at most 4096"),
        (MISTRAL, TEXT, InferenceSettings(stop=tuple("abcdefghijk")), "at most 10 stop sequences"),
        (NOVA, EMBED, InferenceSettings(), "prompt.template is required"),
        (COHERE, TEXT, InferenceSettings(), "prompt.input_column is required"),
        (COHERE, EMBED, InferenceSettings(dimensions=256), "inference.dimensions"),
        (COHERE, EMBED, InferenceSettings(input_type="image"), "inference.input_type"),
        (COHERE, EMBED, InferenceSettings(truncate="LEFT"), "inference.truncate"),
        (TITAN_V1, EMBED, InferenceSettings(dimensions=512), "always have 1536 dimensions"),
        (TITAN_V1, EMBED, InferenceSettings(normalize=False), "inference.normalize"),
    ],
)
def test_settings_a_family_cannot_take_are_refused_naming_the_spec_field(model, prompt, inference, field):
    with pytest.raises(ValueError, match=field):
        adapter_for(model, "InvokeModel", prompt, inference)


@pytest.mark.parametrize(
    "name, mutate, field",
    [
        ("nova", lambda b: b.pop("messages"), "messages"),
        ("nova", lambda b: b.update(schemaVersion="messages-v2"), "schemaVersion"),
        ("nova", lambda b: b.update(anthropic_version="bedrock-2023-05-31"), "anthropic_version"),
        ("nova", lambda b: b["inferenceConfig"].update(maxTokens="64"), "maxTokens"),
        ("nova", lambda b: b.update(modelId=NOVA), "modelId"),
        ("llama3", lambda b: b.update(prompt="What is 2+2?"), "prompt"),
        ("llama3", lambda b: b.update(max_gen_len=4096), "max_gen_len"),
        ("llama3", lambda b: b.update(temperature=1.5), "temperature"),
        ("llama3", lambda b: b.update(messages=[]), r"remove \['messages'\]"),
        ("llama4", lambda b: b.pop("max_gen_len"), "max_gen_len"),
        ("mistral", lambda b: b.update(prompt="[INST] hi [/INST]"), "prompt"),
        ("mistral", lambda b: b.update(stop=list("abcdefghijk")), "stop"),
        ("mistral", lambda b: b.update(max_gen_len=64), "max_gen_len"),
        ("mistral-chat", lambda b: b.update(messages=[]), "messages"),
        ("mistral-chat", lambda b: b["messages"][0].update(role="bot"), r"messages\[0\].role"),
        ("mistral-chat", lambda b: b["messages"][1].update(content=[{"text": "x"}]), r"messages\[1\].content"),
        ("mistral-chat", lambda b: b.update(prompt="x"), "prompt"),
        ("cohere", lambda b: b.update(texts=["a", "b"]), "texts"),
        ("cohere", lambda b: b.pop("input_type"), "input_type"),
        ("cohere", lambda b: b.update(texts=["x" * 2049]), "texts.0. has 2049 characters"),
        ("cohere", lambda b: b.update(embedding_types=["int8"]), "embedding_types"),
        ("titan-v1", lambda b: b.update(dimensions=1024), "dimensions"),
        ("titan-v1", lambda b: b.update(inputText=" "), "inputText must be a non-empty string"),
    ],
)
def test_a_malformed_body_is_rejected_naming_the_field(name, mutate, field):
    a = adapter(name)
    body = build(a, ROW)
    mutate(body)
    with pytest.raises(ValueError, match=field):
        validate(a, body)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_a_row_the_model_would_reject_gets_no_request_and_says_why(name):
    model, prompt, inference, _ = DOCUMENTED[name]
    if prompt.template:
        prompt = PromptSettings(template="{source}", system=prompt.system)
    a = adapter_for(model, "InvokeModel", prompt, inference)
    texts = ["What is 2+2?", "  \n", "x" * 2049]
    batch = pa.RecordBatch.from_pydict({"source": texts, "task": ["arith"] * 3})
    prepared = prepare_batch(SourceBatch(SourceFile("mem.parquet", "parquet", 0), 40, batch), 40, a, None)
    table = prepared.table
    errors = table.column("_input_error").to_pylist()
    assert table.column("source_row").to_pylist() == [40, 41, 42]
    assert errors[0] is None and table.column("_request")[1].as_py() is None
    field = {"cohere": "texts[0]", "titan-v1": "inputText"}.get(name, "prompt")
    assert field in errors[1] or "only whitespace" in errors[1]
    if name == "cohere":  # the only documented character limit among these families
        assert "texts[0] has 2049 characters" in errors[2] and prepared.weights.tolist() == [1, 0, 0]
    else:
        assert errors[2] is None and prepared.weights.tolist() == [1, 0, 1]
    for text, error in zip(texts, errors):
        body = a.body_for_text(text)
        if error is None:
            validate(a, body)
        else:
            with pytest.raises(ValueError):
                validate(a, body)


# name -> (value column type, token counts the model returns, stop reasons: finished, cut at max tokens)
ANSWERS = {
    "nova": (pa.string(), True, ("end_turn", "max_tokens")),
    "llama3": (pa.string(), True, ("stop", "length")),
    "llama4": (pa.string(), True, ("stop", "length")),
    "mistral": (pa.string(), False, ("stop", "length")),
    "mistral-chat": (pa.string(), False, ("stop", "length")),
    "cohere": (pa.list_(pa.float32(), 1024), False, (None,)),
    "titan-v1": (pa.list_(pa.float32(), 1536), True, (None,)),
}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_the_local_stack_answer_parses_into_the_right_columns_and_token_counts(name):
    a = adapter(name)
    value_type, has_tokens, stops = ANSWERS[name]
    bodies = [a.body_for_text(f"question {i}") for i in range(5)]
    results = synthesize_batch(DOCUMENTED[name][0], "InvokeModel", bodies)
    lines = [
        json.dumps({"recordId": f"r{i}", "modelInput": body, "modelOutput": json.loads(r.output_json)})
        for i, (body, r) in enumerate(zip(bodies, results))
    ]
    parser = OutputParser(a, expected_ids=[f"r{i}" for i in range(5)])
    batch = parser.parse_chunk("\n".join(lines).encode())
    assert parser.stats.fallback_chunks == 0 and parser.stats.succeeded == 5
    value = batch.column(1)
    assert value.type == value_type and value.null_count == 0
    if a.kind == "text":
        assert all(t.startswith("[emulated]") for t in value.to_pylist())
    assert set(batch.column("stop_reason").to_pylist()) <= set(stops)
    in_tok, out_tok = batch.column("input_tokens").to_pylist(), batch.column("output_tokens").to_pylist()
    if has_tokens:
        assert in_tok == [r.input_tokens for r in results] and all(t > 0 for t in in_tok)
        assert out_tok == [r.output_tokens for r in results]
    else:
        assert in_tok == out_tok == [None] * 5  # not in the body: the job manifest has the totals


# ---- end to end on the local stack ---------------------------------------------------------------

E2E = {
    "nova": (NOVA, {"template": "Task: {task}\n\n{source}", "system": "Answer briefly."}, {"max_tokens": 128}),
    "llama": (LLAMA3, {"template": "Task: {task}\n\n{source}", "system": "Answer briefly."}, {"temperature": 0.2}),
    "mistral": (MISTRAL, {"template": "{source}"}, {"stop": ["\n\n"]}),
    "mistral-chat": (MISTRAL_CHAT, {"template": "{source}", "system": "Answer briefly."}, {}),
    "cohere": (COHERE, {"input_column": "source"}, {"input_type": "search_document"}),
}


@pytest.mark.parametrize("name", sorted(E2E))
def test_pipeline_end_to_end_on_the_local_stack(name, make_pipelines, instance, s3, bucket, tmp_path):
    model, prompt, inference = E2E[name]
    attrs = pipeline_dict(name.replace("-", "_"), bucket, model=model, prompt=prompt, inference=inference)
    defs, (spec,) = make_pipelines([attrs], rows=150)
    summary = run(defs, spec, instance)

    merged = read_parquet(s3, summary.merged_uri, tmp_path)
    assert merged.column("source_row").to_pylist() == list(range(150))
    # Cohere takes at most 2,048 characters per text: longer rows are refused before submission
    too_long = [len(t) > 2048 for t in merged.column("source").to_pylist()] if name == "cohere" else [False] * 150
    assert (summary.rows, summary.failed, summary.shards) == (150, sum(too_long), 1)
    errors = merged.column("error_message").to_pylist()
    assert [e is not None and "texts[0] has" in e for e in errors] == too_long
    if name == "cohere":
        column = merged.column("embedding")
        assert column.type == pa.list_(pa.float32(), 1024) and column.null_count == sum(too_long) > 0
        vectors = np.asarray(column.combine_chunks().drop_null().flatten()).reshape(-1, 1024)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
        assert merged.column("input_tokens").null_count == 150  # Cohere's body has no token counts
    else:
        assert all(t.startswith("[emulated]") for t in merged.column("output_text").to_pylist())
        counted = name in ("nova", "llama")
        assert (merged.column("output_tokens").null_count == 0) == counted
        assert (summary.output_tokens > 0) == counted


def test_adapter_lookup_errors_name_the_model():
    with pytest.raises(ValueError, match="'ai21.jamba-1-5-mini-v1:0' has no InvokeModel adapter"):
        adapter_for("ai21.jamba-1-5-mini-v1:0", "InvokeModel", PromptSettings(template="{a}"), InferenceSettings())
    with pytest.raises(ValueError, match="has no Converse adapter"):
        adapter_for("amazon.titan-embed-text-v2:0", "Converse", PromptSettings(template="{a}"), InferenceSettings())
    profile = adapter_for(
        "eu.anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel", PromptSettings(template="{a}"), InferenceSettings()
    )
    assert profile.family == "anthropic-claude"


def test_template_missing_value_in_row_is_a_row_error():
    import pyarrow as pa

    from bedrock_assets.records import prepare_batch
    from bedrock_assets.sources import SourceBatch, SourceFile

    a = adapter_for(
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "InvokeModel",
        PromptSettings(template="[{task}] {source}"),
        InferenceSettings(),
    )
    batch = pa.RecordBatch.from_pydict({"source": ["ok", None], "task": ["t", "t"]})
    prepared = prepare_batch(SourceBatch(SourceFile("mem.parquet", "parquet", 0), 0, batch), 0, a, None)
    assert prepared.weights.tolist() == [1, 1]  # None renders as empty text but the task still fills the prompt

    t = adapter_for(
        "amazon.titan-embed-text-v2:0", "InvokeModel", PromptSettings(input_column="source"), InferenceSettings()
    )
    prepared = prepare_batch(SourceBatch(SourceFile("mem.parquet", "parquet", 0), 0, batch), 0, t, None)
    assert prepared.weights.tolist() == [1, 0]
    assert "inputText must be a non-empty string" in prepared.table.column("_input_error")[1].as_py()


def test_a_blank_prompt_is_rejected_before_submission_for_every_text_family():
    import pyarrow as pa

    for model, invocation in (
        ("anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel"),
        ("us.amazon.nova-lite-v1:0", "Converse"),
        ("us.amazon.nova-lite-v1:0", "InvokeModel"),
        ("meta.llama3-3-70b-instruct-v1:0", "InvokeModel"),
        ("mistral.mistral-small-2402-v1:0", "InvokeModel"),
        ("mistral.mistral-large-2407-v1:0", "InvokeModel"),
    ):
        adapter = adapter_for(model, invocation, PromptSettings(template="{q}"), InferenceSettings())
        errors = adapter.text_errors(pa.array(["fine", " \n\t ", ""])).to_pylist()
        assert errors[0] is None and errors[1] == errors[2] and "only whitespace" in errors[1]
        with pytest.raises(ValueError, match="blank|non-blank"):
            validate(adapter, adapter.body_for_text("   "))


HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def test_a_template_with_fixed_text_skips_the_blank_check_and_one_without_keeps_it(monkeypatch):
    rows = pa.record_batch({"q": ["fine", " \n ", None]})
    bare = adapter_for(HAIKU, "InvokeModel", PromptSettings(template="{q}"), InferenceSettings())
    assert [e is None for e in bare.row_errors(rows).to_pylist()] == [True, False, False]
    spaced = adapter_for(HAIKU, "InvokeModel", PromptSettings(template=" \n{q}\n "), InferenceSettings())
    assert [e is None for e in spaced.row_errors(rows).to_pylist()] == [True, False, False]  # whitespace is no text
    fixed = adapter_for(HAIKU, "InvokeModel", PromptSettings(template="Question: {q}"), InferenceSettings())
    monkeypatch.setattr(type(fixed), "texts", lambda *a, **k: pytest.fail("rendered for a check that cannot fire"))
    assert fixed.row_errors(rows).to_pylist() == [None, None, None]
