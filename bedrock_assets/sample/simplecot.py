"""Deterministic synthetic generator of a SimpleCoT-like dataset.

The real SimpleCoT dataset has ~2.2M rows with four text columns
(``source``, ``target``, ``rationale``, ``task``).  This module synthesizes
look-alike data of any size without downloading anything:

* ``source``: an instruction/question; log-normal length (median ~300 chars,
  ~1% of rows above 3000 chars, capped at :data:`SOURCE_MAX_CHARS`); some rows
  carry multi-line ``Options:`` blocks.
* ``target``: a short answer (yes/no, a number, an option letter or a short
  phrase; at most :data:`TARGET_MAX_CHARS` chars).
* ``rationale``: a few hundred chars of "step-by-step" text ending in
  ``So the answer is <target>.``.
* ``task``: one of a fixed list of a few hundred task names, Zipf-skewed.

About 2% of rows contain non-ASCII text (accents, CJK, emoji) in ``source``
and ``rationale``.

Rows are generated in fixed blocks of :data:`BLOCK_ROWS` rows, each block from
its own RNG seeded by ``(seed, block_index)``; ``batch_rows`` only regroups
rows, so the data is identical for any batch size, and row ``i`` does not
depend on ``n_rows``.  All string building is vectorized (numpy index draws +
pyarrow ``take``/``binary_join``), so memory is bounded by roughly one batch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "BLOCK_ROWS",
    "SIMPLECOT_COLUMNS",
    "SOURCE_MAX_CHARS",
    "TARGET_MAX_CHARS",
    "RATIONALE_MAX_CHARS",
    "TASK_NAMES",
    "simplecot_schema",
    "iter_simplecot_batches",
    "generate_simplecot_table",
    "write_simplecot",
    "main",
]

SIMPLECOT_COLUMNS: tuple[str, ...] = ("source", "target", "rationale", "task")

#: Rows per deterministic generation block (changing it changes the data).
BLOCK_ROWS = 8192
SOURCE_MAX_CHARS = 8000
TARGET_MAX_CHARS = 60
RATIONALE_MAX_CHARS = 3000

# log-normal parameters (natural log of a character count)
_SOURCE_MEDIAN, _SOURCE_SIGMA = 270.0, 1.05  # body; P(len > 3000) ~ 1.1%
_RATIONALE_MEDIAN, _RATIONALE_SIGMA = 260.0, 0.45
_NON_ASCII_RATE = 0.02
_FORMATS = ("parquet", "csv", "jsonl")

# ----------------------------------------------------------------------------
# Built-in vocabulary (fixed; independent of the user seed)
# ----------------------------------------------------------------------------
_WORDS = """
the a an of to in on for with by from at as is are was were be been has have had
it this that these those there their they he she his her we you our its who which
what when where why how many much more most less few some any all each every both
man woman child boy girl people person team student teacher doctor farmer worker
city town village country river mountain forest lake ocean road bridge house school
store market office park garden kitchen library hospital station airport museum
apple banana orange book pencil car bus train bicycle dog cat bird horse fish cow
water food money time day week month year hour minute dollar mile meter kilogram
price cost total number sum difference product ratio percent half third quarter
buy sell give take make build read write run walk jump swim play eat drink cook
find know think say tell ask answer solve count measure compare explain describe
big small large tiny long short tall high low fast slow hot cold new old young
good bad happy sad red blue green yellow white black heavy light early late
first second third last next previous before after during while because since
therefore however although unless until if then so but and or not only also
premise hypothesis sentence question statement context claim evidence option
true false correct incorrect possible impossible likely unlikely reasonable
game song movie story picture letter word language history science music art
sport football basketball tennis chess computer phone camera window door table
chair bed shirt shoe hat coat rain snow wind sun moon star sky cloud tree flower
grass rock sand stone metal wood glass paper plastic energy light sound heat
animal plant cell body brain heart blood bone muscle skin eye ear hand foot
mother father sister brother friend family neighbor customer driver player
earns spends saves pays costs weighs holds carries contains includes requires
each_day per twice three four five six seven eight nine ten twenty hundred thousand
""".split()
_WORDS = [w.replace("_", " ") for w in _WORDS]

_NON_ASCII_PIECES = [
    "café",
    "naïve",
    "résumé",
    "Größe",
    "señor",
    "façade",
    "jalapeño",
    "Ærø",
    "São Paulo",
    "Zürich",
    "crème brûlée",
    "déjà vu",
    "Ω≈π",
    "x² + y²",
    "°C",
    "日本語",
    "東京",
    "中文问题",
    "数学题",
    "答案是",
    "こんにちは",
    "한국어",
    "привет",
    "спасибо",
    "Ελληνικά",
    "שלום",
    "مرحبا",
    "हिन्दी",
    "😀",
    "🚀",
    "🎉",
    "👍",
    "🤔",
    "✅",
    "🍎",
    "📚",
    "€12",
    "£5",
    "¥300",
    "…",
]

_SOURCE_PREFIXES = [
    "Question:",
    "Q:",
    "Answer the following question.",
    "Premise:",
    "Solve this math problem:",
    "Given the sentence",
    "Claim:",
    "Is the following sentence factually correct?",
    "Read the passage below.",
    "Student asked:",
    "Problem:",
    "Consider the following statement.",
    "Choose the sentence that goes against common sense.",
    "Test for natural language inference.",
    "Context:",
    "Instruction:",
    "Pick which sentence is not logical.",
    "Quick question:",
    "Translate the following text into simple English:",
    "Lizzy:",
    "Give a stream of consciousness and then the final answer.",
    "Explain your reasoning before answering:",
    "Denny asked:",
    "Can we conclude from the premise that the hypothesis is true?",
]

_RATIONALE_PREFIXES = [
    "Let's think step by step.",
    "Step-by-step reasoning process:",
    "The relevant information is:",
    "To answer this question, we should know that",
    "First, note that",
    "Stream of consciousness:",
    "Reasoning:",
    "We start by observing that",
    "Let me think.",
    "Explanation:",
    "Step 1:",
    "OK... Let's work this out.",
    "Chain of thought:",
]

_YESNO_ANSWERS = [
    "yes",
    "no",
    "it is not possible to tell",
    "Yes",
    "No",
    "true",
    "false",
]
_OPTION_ANSWERS = ["(A)", "(B)", "(C)", "(D)", "(E)", "Sentence A", "Sentence B"]

# source suffix per answer kind (0=yes/no, 1=number, 2=option, 3=phrase)
_SUFFIXES_BY_KIND = [
    [
        "\nOptions:\n- yes\n- no\n- it is not possible to tell",
        "\nOptions:\n- yes\n- no",
        " Yes or no?",
    ],
    ["", " Give the numeric answer.", " How many are there?", " What is the total?"],
    [
        "\nOptions:\n(A) first\n(B) second\n(C) third\n(D) fourth\n(E) fifth",
        "\nOptions:\n- Sentence A\n- Sentence B",
        "\nOptions:\n(A) 12\n(B) 24\n(C) 36\n(D) 48",
    ],
    ["", "?", " Answer briefly.", "\nAnswer:"],
]


# Task names of the kinds SimpleCoT mixes (CoT, Flan, Natural Instructions v2, T0), expanded below
_COT_TASKS = (
    "gsm8k",
    "esnli",
    "creak",
    "ecqa",
    "strategyqa",
    "qasc",
    "sensemaking",
    "aqua",
    "math_qa",
    "stream",
    "sqa",
    "sense",
    "esnli_ii",
    "creak_ii",
    "ecqa_ii",
    "qasc_ii",
    "gsm8k_ii",
    "strategyqa_ii",
    "aqua_ii",
    "sensemaking_ii",
)
_FLAN_TASKS = (
    "anli_r1",
    "anli_r2",
    "anli_r3",
    "rte",
    "wnli",
    "qnli",
    "mnli",
    "snli",
    "boolq",
    "copa",
    "hellaswag",
    "piqa",
    "winogrande",
    "arc_easy",
    "arc_challenge",
    "openbookqa",
    "commonsenseqa",
    "trivia_qa",
    "nq_open",
    "squad_v1",
    "squad_v2",
    "drop",
    "quac",
    "coqa",
    "cosmos_qa",
    "story_cloze",
    "wsc",
    "math_dataset",
    "ag_news",
    "imdb_reviews",
    "yelp_polarity",
    "sentiment140",
    "sst2",
    "cola",
    "mrpc",
    "qqp",
    "stsb",
    "paws_wiki",
    "cnn_dailymail",
    "xsum",
    "gigaword",
    "multi_news",
    "samsum",
    "aeslc",
    "wiki_lingua",
    "opinion_abstracts",
    "dart",
    "e2e_nlg",
    "web_nlg",
    "common_gen",
    "wmt16_translate_de_en",
    "wmt16_translate_ro_en",
    "wmt14_translate_fr_en",
    "para_crawl",
    "definite_pronoun_resolution",
    "glue_wnli",
    "fix_punct",
    "true_case",
    "word_segment",
    "coqa_qa",
)
_NIV2_TOPICS = (
    "question_answering",
    "text_classification",
    "sentiment_analysis",
    "answer_verification",
    "commonsense_reasoning",
    "named_entity_recognition",
    "coreference_resolution",
    "textual_entailment",
    "summarization",
    "translation",
    "paraphrasing",
    "grammar_error_detection",
    "question_generation",
    "title_generation",
    "math_word_problem",
    "program_execution",
    "keyword_tagging",
    "fill_in_the_blank",
    "sentence_ordering",
    "toxic_language_detection",
)
_T0_TASKS = (
    "adversarial_qa",
    "quoref",
    "ropes",
    "duorc",
    "wiki_hop",
    "wiki_qa",
    "sciq",
    "quail",
    "quarel",
    "quartz",
    "social_i_qa",
    "dream",
    "app_reviews",
    "amazon_polarity",
    "dbpedia_14",
    "trec",
    "hotpot_qa",
    "kilt_tasks",
    "cos_e",
    "race",
)


def _build_task_names() -> list[str]:
    """A fixed list of ~330 realistic-ish SimpleCoT task names."""
    names = [f"cot_{c}" for c in _COT_TASKS]
    names += [f"cot_{c}_{i:04d}" for c in _COT_TASKS[:8] for i in (7, 42, 123, 512, 1024)]
    names += [f"flan_{f}" for f in _FLAN_TASKS]
    names += [f"flan_{f}_template_{t}" for f in _FLAN_TASKS[:25] for t in range(2)]
    for k, topic in enumerate(_NIV2_TOPICS):
        for j in range(6):
            names.append(f"niv2_task{(k * 53 + j * 97) % 1700:03d}_{topic}")
    names += [f"t0_{t}" for t in _T0_TASKS]
    return list(dict.fromkeys(names))  # first occurrence of each, in order


TASK_NAMES: tuple[str, ...] = tuple(_build_task_names())


def _build_vocab() -> tuple[pa.Array, np.ndarray, pa.Array, int]:
    """Pre-join words into ~4k ASCII phrases (+ non-ASCII pieces).

    Returns (combined phrase array, phrase char lengths, ascii-word array,
    number of ASCII phrases); non-ASCII phrases follow the ASCII ones.
    """
    rng = np.random.default_rng(0x5C07)
    words = np.array(_WORDS, dtype=object)
    phrases: list[str] = []
    for _ in range(4096):
        k = int(rng.integers(1, 5))
        p = " ".join(words[rng.integers(0, len(words), k)])
        r = rng.random()
        if r < 0.12:
            p += ","
        elif r < 0.24:
            p += "."
        elif r < 0.28:
            p = f"{p} {int(rng.integers(0, 1000))}"
        phrases.append(p)
    n_ascii = len(phrases)
    phrases += _NON_ASCII_PIECES
    lengths = np.array([len(p) for p in phrases], dtype=np.float64)
    return pa.array(phrases, pa.string()), lengths, pa.array(_WORDS, pa.string()), n_ascii


_PHRASES, _PHRASE_LENS, _WORD_ARR, _N_ASCII = _build_vocab()
_N_NON_ASCII = len(_NON_ASCII_PIECES)
_MEAN_TOKEN_CHARS = float(_PHRASE_LENS[:_N_ASCII].mean()) + 1.0  # + separator

_TASK_ARR = pa.array(TASK_NAMES, pa.string())
_TASK_P = 1.0 / (np.arange(len(TASK_NAMES)) + 3.0) ** 1.05
_TASK_P /= _TASK_P.sum()
# fixed answer kind per task (0=yes/no, 1=number, 2=option, 3=phrase)
_TASK_KIND = np.random.default_rng(0xC07).choice(4, size=len(TASK_NAMES), p=[0.3, 0.25, 0.2, 0.25])

_SRC_PREFIX_ARR = pa.array(_SOURCE_PREFIXES, pa.string())
_RAT_PREFIX_ARR = pa.array(_RATIONALE_PREFIXES, pa.string())
_YESNO_ARR = pa.array(_YESNO_ANSWERS, pa.string())
_OPTION_ARR = pa.array(_OPTION_ANSWERS, pa.string())
_SUFFIX_ARR = pa.array([s for group in _SUFFIXES_BY_KIND for s in group], pa.string())
_SUFFIX_START = np.cumsum([0] + [len(g) for g in _SUFFIXES_BY_KIND])[:-1]
_SUFFIX_COUNT = np.array([len(g) for g in _SUFFIXES_BY_KIND])
# body caps so that prefix + body + suffix never exceeds the column caps
_SOURCE_BODY_MAX = (
    SOURCE_MAX_CHARS - 1 - max(map(len, _SOURCE_PREFIXES)) - max(len(s) for g in _SUFFIXES_BY_KIND for s in g)
)
_RATIONALE_BODY_MAX = (
    RATIONALE_MAX_CHARS - 1 - max(map(len, _RATIONALE_PREFIXES)) - len(" So the answer is .") - TARGET_MAX_CHARS
)


# ----------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------
def simplecot_schema() -> pa.Schema:
    """Arrow schema: four non-nullable ``pa.string()`` columns."""
    return pa.schema([pa.field(c, pa.string(), nullable=False) for c in SIMPLECOT_COLUMNS])


def _lognormal_counts(rng: np.random.Generator, n: int, median: float, sigma: float, lo: int, hi: int) -> np.ndarray:
    """Target char lengths -> number of phrase tokens per row."""
    chars = np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi)
    return np.maximum(np.rint(chars / _MEAN_TOKEN_CHARS), 2).astype(np.int32)


def _text_column(rng: np.random.Generator, counts: np.ndarray, non_ascii_rows: np.ndarray, max_chars: int) -> pa.Array:
    """Join ``counts[i]`` random phrases per row; inject non-ASCII phrases."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    idx = rng.integers(0, _N_ASCII, total, dtype=np.int32)
    # non-ASCII: first token of each flagged row, plus ~25% of its other tokens
    flagged = np.flatnonzero(non_ascii_rows)
    if flagged.size:
        idx[offsets[flagged]] = _N_ASCII + rng.integers(0, _N_NON_ASCII, flagged.size)
        row_of_tok = np.repeat(non_ascii_rows, counts)
        extra = row_of_tok & (rng.random(total) < 0.25)
        idx[extra] = _N_ASCII + rng.integers(0, _N_NON_ASCII, int(extra.sum()))
    tokens = _PHRASES.take(pa.array(idx))
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), tokens), " ")
    return pc.utf8_slice_codeunits(joined, 0, max_chars)


def _generate_block(seed: int, block: int) -> pa.RecordBatch:
    """Generate the ``BLOCK_ROWS`` rows of block ``block`` (pure function)."""
    n = BLOCK_ROWS
    rng = np.random.default_rng(np.random.SeedSequence([seed, block, 0x51C07]))

    task_idx = rng.choice(len(TASK_NAMES), size=n, p=_TASK_P)
    kind = _TASK_KIND[task_idx]
    non_ascii = rng.random(n) < _NON_ASCII_RATE
    src_counts = _lognormal_counts(rng, n, _SOURCE_MEDIAN, _SOURCE_SIGMA, 20, SOURCE_MAX_CHARS + 200)
    rat_counts = _lognormal_counts(rng, n, _RATIONALE_MEDIAN, _RATIONALE_SIGMA, 40, RATIONALE_MAX_CHARS)

    # ---- target: chosen per-row by the task's answer kind
    yesno = _YESNO_ARR.take(pa.array(rng.integers(0, len(_YESNO_ANSWERS), n)))
    number = pc.cast(pa.array(rng.integers(0, 10_000, n) // rng.choice([1, 1, 10, 100], n)), pa.string())
    option = _OPTION_ARR.take(pa.array(rng.integers(0, len(_OPTION_ANSWERS), n)))
    w_counts = rng.integers(1, 7, n, dtype=np.int32)
    w_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(w_counts, out=w_offsets[1:])
    words = _WORD_ARR.take(pa.array(rng.integers(0, len(_WORDS), int(w_offsets[-1]))))
    phrase = pc.utf8_slice_codeunits(
        pc.binary_join(pa.ListArray.from_arrays(pa.array(w_offsets), words), " "), 0, TARGET_MAX_CHARS
    )
    target = pc.choose(pa.array(kind.astype(np.int8)), yesno, number, option, phrase)

    # ---- source: prefix + body + kind-specific suffix
    body = _text_column(rng, src_counts, non_ascii, _SOURCE_BODY_MAX)
    prefix = _SRC_PREFIX_ARR.take(pa.array(rng.integers(0, len(_SOURCE_PREFIXES), n)))
    suffix_idx = _SUFFIX_START[kind] + rng.integers(0, 1 << 30, n) % _SUFFIX_COUNT[kind]
    suffix = _SUFFIX_ARR.take(pa.array(suffix_idx))
    source = pc.binary_join_element_wise(prefix, " ", body, suffix, "")

    # ---- rationale: prefix + reasoning + "So the answer is <target>."
    rbody = _text_column(rng, rat_counts, non_ascii, _RATIONALE_BODY_MAX)
    rprefix = _RAT_PREFIX_ARR.take(pa.array(rng.integers(0, len(_RATIONALE_PREFIXES), n)))
    rationale = pc.binary_join_element_wise(rprefix, " ", rbody, " So the answer is ", target, ".", "")

    task = _TASK_ARR.take(pa.array(task_idx))
    return pa.RecordBatch.from_arrays([source, target, rationale, task], schema=simplecot_schema())


def iter_simplecot_batches(n_rows: int, seed: int = 0, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Yield record batches (``batch_rows`` rows each, last one shorter) of the dataset.

    Content depends only on ``(seed, row index)``; ``n_rows == 0`` yields nothing.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if batch_rows <= 0:
        raise ValueError(f"batch_rows must be > 0, got {batch_rows}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    pending: list[pa.RecordBatch] = []
    pending_n = 0
    n_blocks = -(-n_rows // BLOCK_ROWS)
    for b in range(n_blocks):
        rb = _generate_block(seed, b)
        remaining = n_rows - b * BLOCK_ROWS
        if remaining < BLOCK_ROWS:
            rb = rb.slice(0, remaining)
        pending.append(rb)
        pending_n += rb.num_rows
        while pending_n >= batch_rows:
            merged = pending[0] if len(pending) == 1 else pa.concat_batches(pending)
            yield merged.slice(0, batch_rows)
            rest = merged.slice(batch_rows)
            pending = [rest] if rest.num_rows else []
            pending_n = rest.num_rows
    if pending_n:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def generate_simplecot_table(n_rows: int, seed: int = 0) -> pa.Table:
    """Materialize ``n_rows`` rows as one table (convenience for small sizes)."""
    batches = list(iter_simplecot_batches(n_rows, seed))
    return pa.Table.from_batches(batches, schema=simplecot_schema())


# ----------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------
def write_simplecot(
    path: str | Path,
    n_rows: int,
    seed: int = 0,
    fmt: str = "parquet",
    batch_rows: int = 65_536,
) -> Path:
    """Stream ``n_rows`` generated rows to ``path`` as parquet, csv or jsonl; return the path."""
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}, got {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = simplecot_schema()
    batches = iter_simplecot_batches(n_rows, seed, batch_rows)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, schema) as writer:
            for rb in batches:
                writer.write_batch(rb)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        with pacsv.CSVWriter(path, schema) as writer:
            for rb in batches:
                writer.write_batch(rb)
    else:
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            for rb in batches:
                cols = [rb.column(i).to_pylist() for i in range(len(SIMPLECOT_COLUMNS))]
                fh.writelines(dumps(dict(zip(SIMPLECOT_COLUMNS, row))) + "\n" for row in zip(*cols))
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bedrock_assets.sample.simplecot OUT --rows N [--seed S] [--format F]``."""
    ap = argparse.ArgumentParser(
        prog="python -m bedrock_assets.sample.simplecot",
        description="Write a deterministic synthetic SimpleCoT-like dataset.",
    )
    ap.add_argument("out_path", type=Path)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", dest="fmt", choices=_FORMATS, default="parquet")
    ap.add_argument("--batch-rows", type=int, default=65_536)
    args = ap.parse_args(argv)
    out = write_simplecot(args.out_path, args.rows, seed=args.seed, fmt=args.fmt, batch_rows=args.batch_rows)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
