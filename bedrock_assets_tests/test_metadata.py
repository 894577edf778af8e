"""Metadata tables the UI renders natively: column types from the first row, text where unknown."""

from __future__ import annotations

from bedrock_assets.metadata import table


def test_a_table_types_its_columns_by_the_first_row_and_keeps_its_cells():
    value = table([{"shard": "s00000", "records": 150, "ok": True, "cost": 0.5, "extra": ["x"]}])
    types = {c.name: c.type for c in value.schema.columns}
    assert types == {"shard": "string", "records": "int", "ok": "bool", "cost": "float", "extra": "string"}
    assert value.records[0].data == {"shard": "s00000", "records": 150, "ok": True, "cost": 0.5, "extra": "['x']"}
    empty = table([], ["shard", "message"])
    assert [c.name for c in empty.schema.columns] == ["shard", "message"] and empty.records == []
