"""Embedding vectors as the emulated models write them: float values of 7 significant digits, as JSON text.

``vector_values`` lays out the usual values (between 1e-6 and 1) byte by byte with numpy, the way
Arrow's float formatting writes them, and leaves any other row to Arrow itself.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def round_significant(values: np.ndarray, digits: int = 7) -> np.ndarray:
    """Round each float to ``digits`` significant digits (vectorized)."""
    mag = np.abs(values)
    exp = np.floor(np.log10(np.where(mag == 0, 1.0, mag)))
    scale = 10.0 ** (digits - 1 - exp)
    return np.round(values * scale) / scale


def format_vectors(matrix: np.ndarray) -> list[str]:
    """Serialize each row of a 2-D float array as a compact JSON array string (fast, via Arrow)."""
    return ["[" + values for values in vector_values(matrix).to_pylist()]


def vector_values(matrix: np.ndarray) -> pa.Array:
    """Each row as a JSON array without its ``[``: the values as Arrow's float formatting writes them.

    Arrow writes a value of 7 significant digits (``round_significant``) between 1e-6 and 1 as
    ``[-]0.<zeros><digits>`` without trailing zeros: here each is laid out in 16 bytes (that prefix,
    7 digits, the separator, zero bytes for what it lacks) and the zero bytes are filtered out. A
    row holding any other value (0, 1e-7, 1.5, ...) is written by Arrow.
    """
    blocks = [_slot_values(matrix[start : start + _SLOT_ROWS]) for start in range(0, len(matrix), _SLOT_ROWS)]
    return pa.concat_arrays(blocks) if blocks else pa.array([], pa.string())


def _slot_values(matrix: np.ndarray) -> pa.Array:
    """``vector_values`` of up to _SLOT_ROWS rows."""
    rows, dims = matrix.shape
    magnitude = np.abs(matrix)
    exponent = np.floor(np.log10(np.where(magnitude == 0, 1.0, magnitude)))
    with np.errstate(over="ignore", invalid="ignore"):  # values Arrow writes (inf, nan, 5e-324, ...)
        digits = np.rint(magnitude * 10.0 ** (6 - exponent)).astype(np.int64)
    usual = (exponent >= -6) & (exponent <= -1) & (digits >= 10**6) & (digits < 10**7)
    digits[~usual] = 10**6
    prefix = np.where(usual, -1 - exponent, 0).astype(np.intp) + 6 * (matrix < 0)
    high, low = np.divmod(digits, 10_000)
    slots = np.empty((rows, dims, 2), np.uint64)
    slots[..., 0] = _VALUE_PREFIXES[prefix]
    slots[..., 1] = np.where(low == 0, _DIGITS3_TRIMMED[high], _DIGITS3[high] | _DIGITS4_TRIMMED[low] << np.uint64(24))
    slots[..., 1] |= _SEPARATOR
    slots[:, -1, 1] ^= _SEPARATOR ^ _CLOSE
    flat = slots.view(np.uint8).reshape(-1)
    text = np.packbits(flat != 0, bitorder="little")
    offsets = np.zeros(rows + 1, np.int32)
    np.cumsum(np.bitwise_count(text.reshape(rows, -1)).sum(axis=1), out=offsets[1:])
    data = pc.filter(pa.array(flat), pa.BooleanArray.from_buffers(pa.bool_(), len(flat), [None, pa.py_buffer(text)]))
    values = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), data.buffers()[1])
    unusual = ~usual.all(axis=1)
    if not unusual.any():
        return values
    strings = pc.cast(pa.array(matrix[unusual].ravel()), pa.string())
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, len(strings) + 1, dims, dtype=np.int32)), strings)
    return pc.replace_with_mask(
        values, pa.array(unusual), pc.binary_join_element_wise(pc.binary_join(lists, ","), "]", "")
    )


def _ascii_digits(width: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``width`` ASCII digits of 0 .. 10**width - 1 as little-endian integers: as written, and
    with the trailing zeros as zero bytes."""
    digits = np.arange(10**width)[:, None] // 10 ** np.arange(width - 1, -1, -1) % 10
    written = (digits + ord("0")).astype(np.uint64) << np.arange(0, 8 * width, 8, dtype=np.uint64)
    significant = np.flip(np.cumsum(np.flip(digits, axis=1), axis=1) > 0, axis=1)
    return written.sum(axis=1, dtype=np.uint64), (written * significant).sum(axis=1, dtype=np.uint64)


_SLOT_ROWS = 256  # rows formatted at once (their slots take 4 MB at 1,024 dimensions)
_DIGITS3, _DIGITS3_TRIMMED = _ascii_digits(3)
_DIGITS4_TRIMMED = _ascii_digits(4)[1]
# "[-]0.<zeros>" in the first 8 bytes of a slot, by 6 * negative + zeros; the last byte is "," or "]"
_VALUE_PREFIXES = np.array(
    [int.from_bytes(f"{sign}0.{'0' * zeros}".encode(), "little") for sign in ("", "-") for zeros in range(6)],
    np.uint64,
)
_SEPARATOR, _CLOSE = np.uint64(ord(",") << 56), np.uint64(ord("]") << 56)
