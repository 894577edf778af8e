"""Bulk answers: the records of a batch job whose bodies have their family's usual compact layout.

A batch job's bodies are mostly rendered by one program, so most share one compact layout. Those
in one of their family's layouts (Claude and Titan Text Embeddings V2 so far) are answered with Arrow
and numpy, byte for byte as ``synthetic.synthesize_batch`` answers them one by one; that answers the
others.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.output_schema import JSON_INSTRUCTION

from .catalog import CLAUDE, TITAN_EMBED_V2, ModelInfo, lookup
from .synthetic import MAX_WORDS, MIN_WORDS, WORDS, claude_message, embedding_matrix, emulated_text, titan_embedding
from .validation import CLAUDE_VERSION, TITAN_DIMENSIONS
from .vectors import vector_values

_JSON_TEXT = r'[^"\\\x00-\x1f]*(?:\\["\\bfnrt][^"\\\x00-\x1f]*)*'
_POSITIVE_INT = "[1-9][0-9]{0,15}"
_MARK = re.compile(r'"@@#(\w+)@@"|@@(\w+)@@')
_WHITESPACE = "".join(filter(str.isspace, map(chr, range(0x3001))))  # U+3000 is the last one
# a character that is neither whitespace nor part of an escape: the text is not blank
_NOT_BLANK = r"(?:^|[^\\])[^\\" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE) + "]"
_JSON_ASK = json.dumps(JSON_INSTRUCTION, ensure_ascii=False)[1:-1]
_SPAN = MAX_WORDS - MIN_WORDS + 1  # randint(MIN_WORDS, MAX_WORDS) is MIN_WORDS + randbelow(_SPAN)
_DRAWS = 80  # generator outputs replayed per text: enough for all but ~1 in 10,000 (done one by one)
_WORD_ARRAY = pa.array(WORDS)
_WORD_LENGTHS = np.array([len(word) for word in WORDS])


# (keep, outputs, input tokens, output tokens) of a family's bulk answers: the bodies not kept are left
# to synthesize_batch, a null output is the INPUT_TOO_LONG error
FamilyAnswers = tuple[np.ndarray, pa.Array, np.ndarray, np.ndarray]


class _Layout:
    """JSON text as literal text around fields, from a marked sample.

    A field is marked by a string value: ``"@@name@@"`` (the field is the string's content) or
    ``"@@#name@@"`` (the field is a bare value: a number or a boolean).
    """

    def __init__(self, marked: str) -> None:
        pieces = _MARK.split(marked)
        self.literals: list[str] = pieces[::3]
        self.fields: list[str] = [raw or text for raw, text in zip(pieces[1::3], pieces[2::3])]

    @classmethod
    def of(cls, sample: Any, *, sort_keys: bool = False, ensure_ascii: bool = True) -> _Layout:
        return cls(json.dumps(sample, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=ensure_ascii))

    def render(self, values: dict[str, Any]) -> pa.Array:
        """The text of each row, given each field's values (an array, or a scalar for all rows)."""
        parts: list[Any] = [self.literals[0]]
        for name, literal in zip(self.fields, self.literals[1:]):
            parts += [values[name], literal]
        return pc.binary_join_element_wise(*parts, "")


class _BodyShape:
    """A compact body layout (keys in the renderer's order) whose bodies ``answer`` answers in bulk."""

    def __init__(self, sample: dict[str, Any], values: dict[str, str], answer: Callable[..., FamilyAnswers]) -> None:
        self.answer = answer
        self.layout = _Layout.of(sample, ensure_ascii=False)
        self.sorted = _Layout.of(sample, sort_keys=True, ensure_ascii=False)  # as input_seed writes it
        parts = [re.escape(self.layout.literals[0])]
        for name, literal in zip(self.layout.fields, self.layout.literals[1:]):
            parts += [f"(?:{values.get(name, _JSON_TEXT)})", re.escape(literal)]
        self.pattern = "^" + "".join(parts) + "$"
        self.texts = [name for name in self.layout.fields if name not in values]

    def matches(self, bodies: pa.Array) -> np.ndarray:
        """Which bodies are of this shape (the pattern runs on those that end like it)."""
        matched = _numpy(pc.ends_with(bodies, self.layout.literals[-1]))
        rows = np.flatnonzero(matched)
        matched[rows] = _numpy(pc.match_substring_regex(bodies.take(rows), self.pattern))
        return matched

    def cut(self, bodies: pa.Array) -> dict[str, pa.Array]:
        """Each field's text in bodies of this shape.

        A field ends where the literal after it first occurs: a bare value cannot hold it, nor can an
        escaped string, where every quote follows a backslash (each literal after a string has a
        quote past its first character that follows none, and no overlap with itself).
        """
        rest = pc.utf8_slice_codeunits(bodies, len(self.layout.literals[0]))
        fields = {}
        *inner, last = self.layout.fields
        for name, literal in zip(inner, self.layout.literals[1:]):
            halves = pc.split_pattern(rest, literal, max_splits=1)
            fields[name], rest = pc.list_element(halves, 0), pc.list_element(halves, 1)
        fields[last] = pc.utf8_slice_codeunits(rest, 0, -len(self.layout.literals[-1]))
        return fields

    def text_lengths(self, bodies: pa.Array, fields: dict[str, pa.Array]) -> np.ndarray:
        """Characters in the string fields of each body, decoded (only their escapes hold backslashes)."""
        return sum(_numpy(pc.utf8_length(fields[name])) for name in self.texts) - _escapes(bodies)


@dataclass(frozen=True)
class BulkAnswers:
    """synthesize_batch's results for the bodies at ``rows``, column-wise.

    ``outputs`` holds each modelOutput's JSON, or null where the result is the INPUT_TOO_LONG error.
    """

    rows: np.ndarray
    outputs: pa.Array
    input_tokens: np.ndarray
    output_tokens: np.ndarray


def _numpy(values: pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False)


def _token_counts(chars: np.ndarray) -> np.ndarray:
    return np.maximum(1, (chars + 3) // 4)


def _escapes(texts: pa.Array) -> np.ndarray:
    """Escape sequences in each (JSON, no \\u) text: ceil(k / 2) in a run of k backslashes."""
    offsets = np.frombuffer(texts.buffers()[1], np.int32, len(texts) + 1, 4 * texts.offset)
    data = np.frombuffer(texts.buffers()[2], np.uint8, offsets[-1] - offsets[0], offsets[0])
    at = np.flatnonzero(data == ord("\\")) + offsets[0]
    starts = np.flatnonzero(np.diff(at, prepend=-2) != 1)
    runs = np.diff(starts, append=len(at))
    rows = np.searchsorted(offsets, at[starts], side="right") - 1
    return np.bincount(rows, (runs + 1) // 2, len(texts)).astype(np.int64)


def _contains(texts: pa.Array, literal: str) -> np.ndarray:
    """Which texts contain ``literal`` (looked for in all of them at once first)."""
    data = texts.buffers()[2]
    if data is None or re.search(re.escape(literal.encode()), memoryview(data)) is None:
        return np.zeros(len(texts), bool)
    return _numpy(pc.match_substring(texts, literal))


def _seeds(sorted_bodies: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Each body's input_seed (given its json.dumps(sort_keys=True) text) and the seed's 16 hex digits."""
    digests = [hashlib.sha256(body).digest()[:8] for body in sorted_bodies.cast(pa.binary()).to_pylist()]
    return np.frombuffer(b"".join(digests), ">u8").astype(np.uint64), [digest.hex() for digest in digests]


def _emulated_texts(
    seeds: np.ndarray, model_id: str, max_tokens: np.ndarray
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """emulated_text for each seed: (the text JSON-escaped, its length, whether max_tokens cut it).

    Replays what random.Random(seed) does for randint and choice: randbelow(n) takes the top
    n.bit_length() bits of each next 32-bit output until they are below n. A text that max_tokens
    cuts, or that needs more than _DRAWS outputs, comes from emulated_text itself.
    """
    rng, stream = random.Random(), bytearray()
    reseed = super(random.Random, rng).seed  # what random.Random(seed) does, without Random.seed's checks
    for seed in seeds.tolist():
        reseed(seed)
        stream += rng.getrandbits(32 * _DRAWS).to_bytes(4 * _DRAWS, "little")
    draws = np.frombuffer(stream, "<u4").reshape(len(seeds), _DRAWS)
    rows = np.arange(len(seeds))
    spans = draws >> np.uint32(32 - _SPAN.bit_length())
    first = np.argmax(spans < _SPAN, axis=1)
    counts = MIN_WORDS + spans[rows, first].astype(np.int64)
    picks = draws >> np.uint32(32 - len(WORDS).bit_length())
    chosen = (picks < len(WORDS)) & (np.arange(_DRAWS) > first[:, None])
    rank = np.cumsum(chosen, axis=1, dtype=np.int16)
    replayed = (spans[rows, first] < _SPAN) & (rank[:, -1] >= counts)
    counts[~replayed] = 0
    words = picks[chosen & (rank <= counts[:, None])]
    prefix = f"[emulated] {model_id}: "
    lengths = (
        len(prefix) + counts + np.bincount(np.repeat(rows, counts), _WORD_LENGTHS[words], len(seeds)).astype(np.int64)
    )
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
    sentences = pc.binary_join(pa.ListArray.from_arrays(offsets, _WORD_ARRAY.take(pa.array(words))), " ")
    texts = pc.binary_join_element_wise(json.dumps(prefix)[1:-1], sentences, ".", "")
    cut = _token_counts(lengths) > max_tokens
    redo = ~replayed | cut
    if redo.any():
        again = [
            emulated_text(seed, model_id, limit) for seed, limit in zip(seeds[redo].tolist(), max_tokens[redo].tolist())
        ]
        texts = pc.replace_with_mask(texts, pa.array(redo), pa.array([json.dumps(text)[1:-1] for text, _ in again]))
        lengths[redo] = [len(text) for text, _ in again]
        cut[redo] = [was_cut for _, was_cut in again]
    return texts, lengths, cut


def _claude_bulk(
    model_id: str, info: ModelInfo, fields: dict[str, pa.Array], chars: np.ndarray, seeds: np.ndarray, hexes: list[str]
) -> FamilyAnswers:
    """Claude text answers; a prompt that asks for JSON is left to synthesize_batch."""
    n_in = _token_counts(chars)
    texts, lengths, cut = _emulated_texts(seeds, model_id, _numpy(pc.cast(fields["max_tokens"], pa.int64())))
    n_out = _token_counts(lengths)
    block = {"type": "text", "text": "@@text@@"}
    layout = _Layout.of(claude_message(model_id, "@@id@@", block, "@@stop@@", "@@#n_in@@", "@@#n_out@@"))
    stop = pc.if_else(pa.array(cut), "max_tokens", "end_turn")
    outputs = layout.render(
        {"id": pa.array(hexes), "text": texts, "stop": stop, "n_in": _texts(n_in), "n_out": _texts(n_out)}
    )
    too_long = n_in > info.context_tokens if info.context_tokens is not None else np.zeros(len(n_in), bool)
    return ~_contains(fields["text"], _JSON_ASK), _null_where(outputs, too_long), n_in, n_out


def _titan_bulk(
    model_id: str, info: ModelInfo, fields: dict[str, pa.Array], chars: np.ndarray, seeds: np.ndarray, hexes: list[str]
) -> FamilyAnswers:
    """Titan Text Embeddings V2 answers; a text that may be blank is left to synthesize_batch."""
    dims = _numpy(pc.cast(fields["dimensions"], pa.int64()))
    normalize = _numpy(pc.equal(fields["normalize"], "true"))
    kinds = sorted(set(zip(dims.tolist(), normalize.tolist())))
    groups = [np.flatnonzero((dims == d) & (normalize == n)) for d, n in kinds]
    vectors = pa.concat_arrays(
        [vector_values(embedding_matrix(seeds[rows].tolist(), d, n)) for rows, (d, n) in zip(groups, kinds)]
    )
    if len(groups) > 1:
        vectors = vectors.take(pa.array(np.argsort(np.concatenate(groups))))
    n_in = _token_counts(chars)
    layout = _Layout(titan_embedding("[@@vector@@", "@@n_in@@", v1=False))
    outputs = _null_where(layout.render({"vector": vectors, "n_in": _texts(n_in)}), chars > info.max_input_chars)
    return _numpy(pc.match_substring_regex(fields["inputText"], _NOT_BLANK)), outputs, n_in, np.zeros_like(n_in)


def _texts(numbers: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(numbers), pa.string())


def _null_where(values: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


_CLAUDE_SAMPLE = {
    "anthropic_version": CLAUDE_VERSION,
    "max_tokens": "@@#max_tokens@@",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "@@text@@"}]}],
}
_TITAN_SAMPLE = {"inputText": "@@inputText@@", "dimensions": "@@#dimensions@@", "normalize": "@@#normalize@@"}
_BULK_SHAPES = {
    CLAUDE: [
        _BodyShape(sample, {"max_tokens": _POSITIVE_INT}, _claude_bulk)
        for sample in (_CLAUDE_SAMPLE, {**_CLAUDE_SAMPLE, "system": "@@system@@"})
    ],
    TITAN_EMBED_V2: [
        _BodyShape(
            _TITAN_SAMPLE, {"dimensions": "|".join(map(str, TITAN_DIMENSIONS)), "normalize": "true|false"}, _titan_bulk
        )
    ],
}


def _bulk_shapes(info: ModelInfo | None, invocation_type: str) -> list[_BodyShape]:
    """The bulk shapes of the model's family (none but for InvokeModel)."""
    return _BULK_SHAPES.get(info.family or "", []) if info and invocation_type == "InvokeModel" else []


def in_bulk_shape(model_id: str, invocation_type: str, bodies: pa.Array) -> np.ndarray:
    """Which bodies (compact JSON texts) are in one of the model's bulk shapes: valid JSON objects."""
    matched = np.zeros(len(bodies), bool)
    for shape in _bulk_shapes(lookup(model_id), invocation_type):
        matched |= shape.matches(bodies)
    return matched


def synthesize_bulk(model_id: str, invocation_type: str, bodies: pa.Array) -> BulkAnswers:
    """synthesize_batch for the bodies in a bulk shape, given as compact JSON texts (ensure_ascii=False)."""
    info = lookup(model_id)
    parts = []
    for shape in _bulk_shapes(info, invocation_type):  # each body is of one shape at most
        rows = np.flatnonzero(shape.matches(bodies))
        if len(rows):
            shaped = bodies.take(rows)
            fields = shape.cut(shaped)
            chars = shape.text_lengths(shaped, fields)
            keep, outputs, n_in, n_out = shape.answer(
                model_id, info, fields, chars, *_seeds(shape.sorted.render(fields))
            )
            parts.append((rows[keep], outputs.filter(pa.array(keep)), n_in[keep], n_out[keep]))
    if not parts:
        return BulkAnswers(
            np.zeros(0, np.intp), pa.array([], pa.string()), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
    kept, answers, tokens_in, tokens_out = zip(*parts)
    return BulkAnswers(
        np.concatenate(kept), pa.concat_arrays(answers), np.concatenate(tokens_in), np.concatenate(tokens_out)
    )
