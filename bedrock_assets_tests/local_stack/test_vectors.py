"""Embedding vectors written as Arrow writes their values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bedrock_assets.local_stack.vectors import (
    format_vectors,
    round_significant,
)


def test_vectors_are_written_as_arrow_writes_their_values() -> None:
    rng = np.random.default_rng(11)
    matrices = [round_significant(rng.standard_normal((300, 256)) * scale) for scale in (1e-5, 1 / 32, 0.05, 0.3, 3)]
    matrices.append(round_significant(rng.uniform(-1, 1, (300, 64)) * 10.0 ** rng.integers(-9, 2, (300, 64))))
    matrices.append(
        np.array([[0.0, -0.0, 1.0, 0.1, 1e-6, -9.999999e-7, 0.9999999, 1e-7, 12.5, 5e-324, np.nan, np.inf]])
    )
    mantissas = np.arange(10**6, 10**7, 61, dtype=np.float64)[:147_000]
    matrices += [
        (mantissas / 10.0 ** (6 - exponent)).reshape(-1, 1000) for exponent in range(-7, 1)
    ]  # digits, trailing zeros
    for matrix in matrices:
        values = pc.cast(pa.array(matrix.ravel()), pa.string()).to_pylist()
        rows = [values[i : i + matrix.shape[1]] for i in range(0, len(values), matrix.shape[1])]
        assert format_vectors(matrix) == ["[" + ",".join(row) + "]" for row in rows]
