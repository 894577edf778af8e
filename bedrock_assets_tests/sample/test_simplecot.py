"""Tests for the synthetic SimpleCoT generator."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from bedrock_assets.sample.simplecot import (
    BLOCK_ROWS,
    RATIONALE_MAX_CHARS,
    SIMPLECOT_COLUMNS,
    SOURCE_MAX_CHARS,
    TARGET_MAX_CHARS,
    iter_simplecot_batches,
    main,
    simplecot_schema,
    write_simplecot,
)


def _table(n: int, seed: int = 0, batch_rows: int = 65_536) -> pa.Table:
    return pa.Table.from_batches(list(iter_simplecot_batches(n, seed, batch_rows)), schema=simplecot_schema())


@pytest.fixture(scope="module")
def big() -> pa.Table:
    return _table(20_000, seed=0)


def test_schema() -> None:
    schema = simplecot_schema()
    assert tuple(schema.names) == SIMPLECOT_COLUMNS == ("source", "target", "rationale", "task")
    assert all(f.type == pa.string() and not f.nullable for f in schema)
    assert _table(10).schema == schema


def test_determinism_and_seed() -> None:
    a, b, c = _table(3000, seed=7), _table(3000, seed=7), _table(3000, seed=8)
    assert a.equals(b)
    assert not a.equals(c)
    assert a["source"] != c["source"]


def test_batch_rows_independence() -> None:
    n = BLOCK_ROWS + 1234
    ref = _table(n, seed=3)
    for br in (1, 997, BLOCK_ROWS, BLOCK_ROWS + 1, 100_000):
        if br == 1:  # keep it fast: just the first few rows one by one
            it = iter_simplecot_batches(n, 3, 1)
            small = [next(it) for _ in range(5)]
            assert all(rb.num_rows == 1 for rb in small)
            assert pa.Table.from_batches(small).equals(ref.slice(0, 5))
            continue
        batches = list(iter_simplecot_batches(n, 3, br))
        assert [rb.num_rows for rb in batches[:-1]] == [br] * (len(batches) - 1)
        assert pa.Table.from_batches(batches).equals(ref)


def test_prefix_stable_across_n_rows() -> None:
    assert _table(50, seed=1).equals(_table(5000, seed=1).slice(0, 50))


@pytest.mark.parametrize("n", [0, 1, 2, 999, BLOCK_ROWS, BLOCK_ROWS + 1])
def test_row_count_exact(n: int) -> None:
    batches = list(iter_simplecot_batches(n, 0, batch_rows=1000))
    assert sum(rb.num_rows for rb in batches) == n
    assert all(rb.num_rows == 1000 for rb in batches[:-1])


def test_invalid_args() -> None:
    with pytest.raises(ValueError):
        list(iter_simplecot_batches(-1))
    with pytest.raises(ValueError):
        list(iter_simplecot_batches(10, batch_rows=0))
    with pytest.raises(ValueError):
        write_simplecot("/tmp/x.bin", 1, fmt="xml")


def test_no_nulls_or_empty(big: pa.Table) -> None:
    for col in SIMPLECOT_COLUMNS:
        assert big[col].null_count == 0
        assert pc.min(pc.utf8_length(big[col])).as_py() > 0


def test_length_distributions(big: pa.Table) -> None:
    src = pc.utf8_length(big["source"]).to_numpy()
    assert 200 <= np.median(src) <= 450
    assert 0.003 <= (src > 3000).mean() <= 0.03
    assert src.max() <= SOURCE_MAX_CHARS
    tgt = pc.utf8_length(big["target"]).to_numpy()
    assert tgt.max() <= TARGET_MAX_CHARS and np.median(tgt) < 30
    assert pc.max(pc.utf8_length(big["rationale"])).as_py() <= RATIONALE_MAX_CHARS
    rat = pc.utf8_length(big["rationale"]).to_numpy()
    assert 150 <= np.median(rat) <= 600
    # rationale ends with the answer
    assert pc.all(pc.ends_with(big["rationale"], ".")).as_py()


def test_task_distribution(big: pa.Table) -> None:
    counts = big["task"].value_counts().field("counts").to_numpy()
    assert 100 <= len(counts) <= 1000
    counts = np.sort(counts)[::-1]
    assert counts[0] > 10 * counts[-1]  # Zipf-like skew


def test_non_ascii_present(big: pa.Table) -> None:
    for col in ("source", "rationale"):
        n = sum(not s.isascii() for s in big[col].to_pylist())
        assert 0.005 * len(big) <= n <= 0.06 * len(big)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_roundtrip(tmp_path, fmt: str) -> None:
    n = 2500
    ref = _table(n, seed=5)
    path = write_simplecot(tmp_path / f"out.{fmt}", n, seed=5, fmt=fmt, batch_rows=1000)
    assert path.exists()
    if fmt == "parquet":
        got = pq.read_table(path)
        assert pq.ParquetFile(path).metadata.num_row_groups == 3
    elif fmt == "csv":
        got = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in SIMPLECOT_COLUMNS}, strings_can_be_null=False
            ),
        )
    else:
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        assert all(list(r) == list(SIMPLECOT_COLUMNS) for r in rows)
        got = pa.Table.from_pylist(rows)
    assert got.num_rows == n
    assert got.cast(simplecot_schema()).equals(ref)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_empty_file(tmp_path, fmt: str) -> None:
    path = write_simplecot(tmp_path / f"empty.{fmt}", 0, fmt=fmt)
    if fmt == "parquet":
        t = pq.read_table(path)
        assert t.num_rows == 0 and t.schema.names == list(SIMPLECOT_COLUMNS)
    else:
        assert path.exists()


def test_cli(tmp_path, capsys) -> None:
    out = tmp_path / "cli.parquet"
    assert main([str(out), "--rows", "123", "--seed", "2", "--format", "parquet"]) == 0
    assert pq.read_table(out).cast(simplecot_schema()).equals(_table(123, seed=2))
