"""What a pipeline's merged_dataset materialization says of it, as one typed record.

merged_dataset writes it as the materialization's metadata (the UI shows it); the headless runner
and anyone else reads it back with ``PipelineReport.from_metadata``, so no metadata key is spelled
in two places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import MetadataValue, TableColumn, TableSchema

from bedrock_assets.metadata import table

JOBS_DIGEST = "jobs_digest"  # which job of every shard the dataset was built from (progress.jobs_digest)


@dataclass(frozen=True)
class MergedDataset:
    """The merged dataset's rows and outcomes, and what the retry rounds sent again."""

    rows: int
    succeeded: int
    errors: dict[str, int]
    shards: int
    uri: str
    retried: int = 0  # records sent again in retry rounds
    retry_rounds: int = 0
    resent_in_batch_jobs: int = 0  # records sent in retry rounds' batch jobs (a record once per round)
    resent_on_demand: int = 0  # records answered through the runtime API
    failed_by_shard: dict[str, int] = field(default_factory=dict)  # first-pass shard -> rows failed in the end
    from_cache: int = 0  # rows whose answer the record cache gave (paid for before, not again)
    sample: Any = None  # pyarrow.Table: the dataset's first rows, with its schema (not kept in the metadata)

    @property
    def failed(self) -> int:
        return self.rows - self.succeeded

    @property
    def error_rate(self) -> float:
        return self.failed / self.rows if self.rows else 0.0

    def metadata(self) -> dict[str, Any]:
        return {
            **self._dagster_metadata(),
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": MetadataValue.json(self.errors),
            "shards": self.shards,
            "records_retried": self.retried,
            "retry_rounds": self.retry_rounds,
            "resent_in_batch_jobs": self.resent_in_batch_jobs,
            "resent_on_demand": self.resent_on_demand,
            "rows_from_cache": self.from_cache,
            "uri": MetadataValue.path(self.uri),
        }

    def _dagster_metadata(self) -> dict[str, Any]:
        """Dagster's own keys: the row count, the column schema, and a few rows to look at."""
        meta: dict[str, Any] = {"dagster/row_count": self.rows}
        if self.sample is not None:
            columns = [TableColumn(f.name, str(f.type)) for f in self.sample.schema]
            meta["dagster/column_schema"] = TableSchema(columns=columns)
            meta["sample_rows"] = MetadataValue.md(_markdown(self.sample))
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> MergedDataset:
        return cls(
            rows=int(meta["rows"]),
            succeeded=int(meta["succeeded"]),
            errors=dict(meta["errors"]),
            shards=int(meta["shards"]),
            uri=str(meta["uri"]),
            retried=int(meta.get("records_retried", 0)),
            retry_rounds=int(meta.get("retry_rounds", 0)),
            resent_in_batch_jobs=int(meta.get("resent_in_batch_jobs", 0)),
            resent_on_demand=int(meta.get("resent_on_demand", 0)),
            from_cache=int(meta.get("rows_from_cache", 0)),
        )


def _markdown(rows: Any, width: int = 60) -> str:
    """A few rows as a Markdown table, long values cut (embeddings shown by their length)."""

    def cell(value: Any) -> str:
        if isinstance(value, list):
            return f"[{len(value)} values]"
        text = "" if value is None else str(value).replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    names = rows.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(r[n]) for n in names) + " |" for r in rows.to_pylist()]
    return "\n".join(lines)


@dataclass(frozen=True)
class Cost:
    """USD by tokens: batch jobs and on-demand calls; None for the whole when the model has no price."""

    total: float | None
    batch: float = 0.0
    on_demand: float = 0.0


@dataclass(frozen=True)
class PipelineReport:
    dataset: MergedDataset
    input_tokens: int
    output_tokens: int
    jobs_digest: str
    cost: Cost
    planned_expected: float | None = None
    planned_worst: float | None = None
    cost_by_round: list[dict[str, Any]] = field(default_factory=list)
    cost_by_lane: list[dict[str, Any]] = field(default_factory=list)  # batch / on demand by service tier
    job_statuses: dict[str, int] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        c = self.cost
        cost: dict[str, Any] = (
            {"cost": "cost unknown (no price for this model: set price_overrides on the bedrock resource)"}
            if c.total is None
            else {
                "cost_usd": round(c.total, 10),
                "cost_batch_usd": round(c.batch, 10),
                "cost_on_demand_usd": round(c.on_demand, 10),
            }
        )
        planned = (
            {"planned_cost_expected_usd": round(self.planned_expected, 10)} if self.planned_expected is not None else {}
        )
        if self.planned_worst is not None:
            planned["planned_cost_worst_usd"] = round(self.planned_worst, 10)
        return {
            **self.dataset.metadata(),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            JOBS_DIGEST: self.jobs_digest,
            **cost,
            **planned,
            "cost_by_round": table(self.cost_by_round, ["round", "cost"]),
            "cost_by_lane": table(self.cost_by_lane, ["lane", "records", "cost"]),
            "job_statuses": MetadataValue.json(self.job_statuses),
            "jobs": table(self.jobs),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> PipelineReport:
        """The report of a merged_dataset materialization (its metadata values, or the raw metadata)."""
        meta = {k: getattr(v, "value", v) for k, v in metadata.items()}
        cost = (
            Cost(float(meta["cost_usd"]), float(meta["cost_batch_usd"]), float(meta["cost_on_demand_usd"]))
            if "cost_usd" in meta
            else Cost(None)
        )
        return cls(
            dataset=MergedDataset.from_metadata(meta),
            input_tokens=int(meta["input_tokens"]),
            output_tokens=int(meta["output_tokens"]),
            jobs_digest=str(meta.get(JOBS_DIGEST, "")),
            cost=cost,
            planned_expected=_number(meta.get("planned_cost_expected_usd")),
            planned_worst=_number(meta.get("planned_cost_worst_usd")),
            cost_by_round=_rows(meta.get("cost_by_round")),
            cost_by_lane=_rows(meta.get("cost_by_lane")),
            job_statuses=dict(meta.get("job_statuses") or {}),
            jobs=_rows(meta.get("jobs")),
        )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _rows(value: Any) -> list[dict[str, Any]]:
    """The rows of a table metadata value."""
    return [dict(r.data) for r in getattr(value, "records", None) or []]
