"""Dagster metadata values shared by the graph's steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

_TYPES = {bool: "bool", int: "int", float: "float"}


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> MetadataValue:
    """A table the UI renders natively; column types from the first row (text when unknown or missing)."""
    columns = list(columns or (rows[0] if rows else []))
    first = rows[0] if rows else {}
    schema = TableSchema(columns=[TableColumn(c, _TYPES.get(type(first.get(c)), "string")) for c in columns])
    records = [TableRecord({c: _cell(r.get(c)) for c in columns}) for r in rows]
    return MetadataValue.table(records=records, schema=schema)


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
