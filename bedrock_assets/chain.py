"""Chained pipelines: one pipeline's merged dataset as the next one's source.

The upstream pipeline's merged_dataset materialization says where its Parquet is (its ``uri``
metadata), so the chain follows what Dagster recorded, not a path written twice. The rows are
taken as they are (optionally only those that succeeded, and only some columns), keeping the
upstream ``record_id`` as the record id. Upstream columns that would collide with this pipeline's
own lineage and outcome columns (``records.LINEAGE``/``OUTCOME``: dropped by default) arrive prefixed with the upstream name (``cot_answers_output_text``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetKey, DagsterInstance

from bedrock_assets.records import LINEAGE, OUTCOME, RECORD_ID
from bedrock_assets.sources import SourceError
from bedrock_assets.spec import SourceSpec


def upstream_key(pipeline: str) -> AssetKey:
    return AssetKey([pipeline, "merged_dataset"])


def upstream_uri(instance: DagsterInstance, pipeline: str) -> str:
    """Where the upstream pipeline's latest merged dataset is; SourceError if it has none yet."""
    event = instance.get_latest_materialization_event(upstream_key(pipeline))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "uri" not in meta:
        raise SourceError(
            f"source.pipeline {pipeline!r} has no merged_dataset yet: materialize {pipeline} first (automation "
            "materializes this pipeline's raw_dataset once it has one)"
        )
    return str(meta["uri"].value)


@dataclass(frozen=True)
class ChainView:
    """Which upstream rows and columns a chained pipeline reads, under which names."""

    upstream: str
    succeeded_only: bool = True
    columns: tuple[str, ...] | None = None

    @classmethod
    def of(cls, source: SourceSpec) -> ChainView | None:
        """The upstream view of a chained pipeline's source (None for a source that is a dataset)."""
        if source.pipeline is None:
            return None
        return cls(source.pipeline, source.succeeded_only, tuple(source.columns) if source.columns else None)

    def selected(self, upstream_columns: list[str]) -> list[str]:
        """The upstream columns carried (record_id always), checked against what the upstream has."""
        if self.columns is None:
            chosen = [c for c in upstream_columns if c not in LINEAGE + OUTCOME]
            chosen += [c for c in ("output_text", "embedding") if c in upstream_columns]
        else:
            missing = [c for c in self.columns if c not in upstream_columns]
            if missing:
                raise SourceError(
                    f"source.columns {missing} are not in {self.upstream}'s merged dataset; it has {upstream_columns}"
                )
            chosen = list(self.columns)
        return [RECORD_ID, *[c for c in chosen if c != RECORD_ID]]

    def name(self, column: str) -> str:
        """The column's name in this pipeline (prefixed when it is a lineage or outcome column upstream)."""
        return f"{self.upstream}_{column}" if column in LINEAGE + OUTCOME else column

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows and columns this pipeline reads from one upstream batch."""
        if self.succeeded_only:
            batch = batch.filter(pc.is_null(batch.column("error_code")))
        columns = self.selected(batch.schema.names)
        return pa.RecordBatch.from_arrays([batch.column(c) for c in columns], names=[self.name(c) for c in columns])
