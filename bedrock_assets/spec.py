"""The pipeline spec: what a ``BedrockBatchPipeline`` component's ``defs.yaml`` attributes say.

Every field is validated when the component loads; an error names the file and the field
(``defs/cot_answers/defs.yaml: attributes.shards.max_recs: unknown key``).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from bedrock_assets.bedrock.model_ids import model_key
from bedrock_assets.bedrock.naming import JOB_NAME_MAX, JOB_NAME_SUFFIX_MAX, check_tag, validate_job_name
from bedrock_assets.bedrock.prices import listed_models, tier_refusal
from bedrock_assets.bedrock.quotas import BatchQuotas, quotas_for
from bedrock_assets.durations import parse_duration
from bedrock_assets.models import InferenceSettings, ModelAdapter, PromptSettings, adapter_for
from bedrock_assets.output_schema import OutputSchema, SchemaError
from bedrock_assets.records import INTERNAL_COLUMNS, LINEAGE, OUTCOME, RECORD_ID
from bedrock_assets.uris import is_s3_uri, parse_s3_uri

PIPELINE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


# columns every merged row has: an output_schema property may not take one of their names
_PIPELINE_COLUMNS = frozenset({RECORD_ID, *INTERNAL_COLUMNS, *LINEAGE, *OUTCOME})


class SpecError(ValueError):
    """A pipeline spec that cannot be used, with the location of the problem."""


class _Strict(dg.Model):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    uri: str | None = Field(default=None, description="local path or s3:// URI of a file or a prefix/directory")
    pipeline: str | None = Field(
        default=None,
        description="instead of uri: another pipeline whose merged_dataset is this one's source (a chain); "
        "its record_id stays the record id",
    )
    succeeded_only: bool = Field(default=True, description="chain: only the rows that succeeded upstream")
    columns: list[str] | None = Field(
        default=None,
        description="chain: the upstream columns to carry (default: all but its lineage and outcome columns); "
        "its output columns arrive as <pipeline>_output_text / <pipeline>_embedding",
    )
    format: Literal["parquet", "csv", "jsonl"] | None = Field(
        default=None, description="inferred from the file extension when omitted"
    )
    id_column: str | None = Field(default=None, description="unique record id column; derived when omitted")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        if v is not None and not v:
            raise ValueError("must not be empty")
        if v and is_s3_uri(v):
            parse_s3_uri(v, what="source.uri")
        return v

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if (data.get("uri") is None) == (data.get("pipeline") is None):
            raise ValueError("set exactly one of source.uri (a dataset) and source.pipeline (a chain)")
        if data.get("pipeline") is not None:
            if not PIPELINE_NAME.fullmatch(str(data["pipeline"])):
                raise ValueError(f"source.pipeline {data['pipeline']!r} is not a pipeline name")
            if data.get("format") not in (None, "parquet"):
                raise ValueError("source.format does not apply to a chain (a merged dataset is Parquet)")
            data = {**data, "id_column": data.get("id_column") or "record_id", "format": "parquet"}
        elif data.get("columns") is not None:
            raise ValueError("source.columns applies to a chain (source.pipeline) only")
        return data


class ModelSpec(_Strict):
    id: str = Field(description="model id, inference profile id or ARN")
    invocation_type: Literal["InvokeModel", "Converse"] = Field(
        default="InvokeModel", description="Converse: Converse-shaped bodies (Claude, Nova, Llama, Mistral)"
    )
    unlisted: bool = Field(
        default=False,
        description="true: a model this package does not list yet (price from price_overrides, quotas from "
        "quota_overrides); otherwise an id outside the list is refused with the nearest listed ones",
    )

    @model_validator(mode="after")
    def _listed(self) -> ModelSpec:
        if self.unlisted or ":custom-model/" in self.id or ":provisioned-model/" in self.id:
            return self
        listed = listed_models()
        base = model_key(self.id)
        if base in listed:
            return self
        prefix = self.id[: len(self.id) - len(base)] if self.id.endswith(base) else ""
        near = [prefix + m for m in difflib.get_close_matches(base, listed, n=3, cutoff=0.6)]
        raise ValueError(
            f"id: unknown model {self.id!r}"
            + (f"; did you mean {' or '.join(repr(m) for m in near)}?" if near else "")
            + " A model this package does not list yet: set model.unlisted: true (and its price in price_overrides)"
        )


class PromptSpec(_Strict):
    template: str | None = Field(default=None, description="text models: {column} placeholders")
    system: str | None = Field(default=None, description="text models: system prompt")
    input_column: str | None = Field(default=None, description="embedding models: the text column")


class InferenceSpec(_Strict):
    max_tokens: int = Field(default=512, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] = Field(default_factory=list, description="stop sequences")
    dimensions: int = Field(default=1024, description="Titan Text Embeddings V2: 256, 512 or 1024")
    normalize: bool = Field(default=True, description="Titan Text Embeddings V2: unit-length vectors")
    input_type: Literal["search_document", "search_query", "classification", "clustering"] = Field(
        default="search_document",
        description="Cohere Embed v3: what the vectors are for (search_document for a corpus, search_query "
        "for queries, classification, clustering)",
    )
    truncate: Literal["NONE", "START", "END"] = Field(
        default="NONE",
        description="Cohere Embed v3: a text over the token limit is an error (NONE) or loses its start/end",
    )


class ShardSpec(_Strict):
    """Narrows the model's batch quotas, never loosens them."""

    max_records: int | None = Field(default=None, gt=0)
    min_records: int | None = Field(default=None, gt=0)
    max_file_bytes: int | None = Field(default=None, gt=0)
    max_job_bytes: int | None = Field(default=None, gt=0)


class RetrySpec(_Strict):
    """Recourse for failed records and jobs (see ``bedrock.error_classes`` for what is retriable)."""

    max_rounds: int = Field(
        default=2,
        ge=0,
        le=9,  # retry shard keys r1-00000 … r9-99999 keep job names within Bedrock's 63 characters
        description="retry rounds: retriable records of all shards pooled into new jobs",
    )
    small_remainder: Literal["on_demand", "leave"] = Field(
        default="on_demand",
        description="fewer retriable records than a job's minimum: send them through the runtime API "
        "(InvokeModel/Converse, on-demand price), or leave them as failed rows",
    )
    on_demand_concurrency: int = Field(default=4, ge=1, le=64, description="parallel on-demand calls")
    max_job_attempts: int = Field(
        default=2,
        ge=1,
        le=5,
        description="attempts per shard job: an Expired job, or one Failed for a transient reason, is "
        "resubmitted automatically up to this many; Stopped jobs never are",
    )
    service_tier: Literal["default", "flex", "priority"] = Field(
        default="default",
        description="the runtime API's service tier for every on-demand call (small remainders, and what a "
        "deadline's cutoff sends on demand): default (standard), flex (cheaper, slower; where the model offers "
        "it) or priority (faster, at a premium); priced from the price table",
    )
    truncated_max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="structured answers cut off at max_tokens (TruncatedStructuredOutput) are resent once in the "
        "retry rounds with max_tokens raised to this (priced in the budget); unset: they stay failed, since the "
        "same body would be cut off again",
    )


def _duration(v: str | None, what: str) -> str | None:
    if v is not None:
        if parse_duration(v) <= timedelta(0):
            raise ValueError(f"{what} must be longer than 0s")
    return v


class DeadlineSpec(_Strict):
    """When the pipeline's results are due: what cannot finish in batch by then is finished on demand."""

    within: str | None = Field(
        default=None, description="e.g. 6h or 1h30m: the deadline is this long after the pipeline's first job"
    )
    at: datetime | None = Field(default=None, description="an ISO 8601 time with its zone, e.g. 2026-12-24T06:00:00Z")
    margin: str = Field(
        default="15m",
        description="kept free before the deadline: the on-demand finish is planned to end this long before it",
    )
    on_demand_records_per_minute: float | None = Field(
        default=None,
        gt=0,
        description="the on-demand throughput the cutoff assumes until the pipeline has measured its own "
        "(default: 12 records a minute per retry.on_demand_concurrency call)",
    )

    @field_validator("within", "margin")
    @classmethod
    def _durations(cls, v: str | None) -> str | None:
        return _duration(v, "a deadline duration")

    @field_validator("at")
    @classmethod
    def _zoned(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError(
                f"{v.isoformat()} has no time zone: write it with Z or an offset, e.g. 2026-12-24T06:00:00Z"
            )
        return v.astimezone(UTC) if v is not None else None

    @model_validator(mode="after")
    def _one(self) -> DeadlineSpec:
        if self.within is not None and self.at is not None:
            raise ValueError("set one of deadline.within (a duration from the first job) and deadline.at, not both")
        return self

    @property
    def active(self) -> bool:
        """The pipeline has a deadline (an empty ``deadline:`` has none)."""
        return self.within is not None or self.at is not None

    @property
    def margin_delta(self) -> timedelta:
        return parse_duration(self.margin)

    @property
    def within_delta(self) -> timedelta | None:
        return parse_duration(self.within) if self.within is not None else None


class CanarySpec(_Strict):
    """A few real records through the runtime API before the pipeline's first batch job."""

    records: int = Field(
        default=3,
        ge=0,
        le=100,
        description="request lines of the first shard sent on demand first: a record that fails for a reason that "
        "is not transient stops the pipeline before any job is created; 0 turns the canary off",
    )


class ExecutionSpec(_Strict):
    """How Dagster runs the pipeline's own compute: the knobs a deployment bounds it with."""

    pool: str | None = Field(
        default=None,
        pattern=r"^\S+$",
        description="the Dagster concurrency pool of the shard steps (jsonl_shards, batch_jobs, batch_job_outputs, "
        "merged_results); its limit is the deployment's (dagster instance concurrency set, or "
        "concurrency.pools.default_limit); default bedrock_assets/<name>",
    )
    executor: Literal["in_process", "multiprocess"] = Field(
        default="in_process",
        description="the stage jobs' executor: in_process (a stage's steps one after another in the run's process, "
        "reading back what the step before wrote from local copies) or multiprocess (a process per step)",
    )


# what a request line is rendered from: the model, the prompt, the inference settings, the output schema
# and the retry settings (retry.truncated_max_tokens renders a resent request)
RENDER_SETTINGS = frozenset({"model", "prompt", "inference", "output_schema", "retry"})


class PipelineSpec(_Strict):
    """One Bedrock batch-inference pipeline: source, model, prompt, where results go, and limits."""

    name: str = Field(description="[a-z][a-z0-9_]*, at most 40 characters: asset group and key prefix")
    source: SourceSpec
    model: ModelSpec
    prompt: PromptSpec = PromptSpec()
    inference: InferenceSpec = InferenceSpec()
    output_uri: str = Field(description="s3:// prefix for shard inputs, Bedrock outputs and results")
    shards: ShardSpec = ShardSpec()
    role_arn: str | None = Field(default=None, description="service role Bedrock assumes; resource default if unset")
    job_name_prefix: str | None = Field(default=None, description="default: the name with _ replaced by -")
    timeout_hours: int = Field(default=24, ge=24, le=168)
    tags: dict[str, str] = Field(default_factory=dict, description="added to every job")
    expected_bucket_owner: str | None = Field(
        default=None, description="12-digit account that must own every bucket this pipeline touches"
    )
    kms_key_id: str | None = Field(default=None, description="KMS key (id, ARN or alias) for everything written")
    retry: RetrySpec = RetrySpec()
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="text models: a JSON schema (type object; string/integer/number/boolean/array-of-string "
        "properties) every answer must match; each property becomes a typed column",
    )
    budget_usd: float | None = Field(
        default=None,
        gt=0,
        description="most this pipeline may spend: shards are submitted only while the worst case of everything "
        "submitted (first pass and retries) stays within it; the rest wait",
    )
    max_truncated_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="fraction of a shard's answers that may be cut off at max_tokens before batch_job_outputs' "
        "answers_complete check warns",
    )
    max_error_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="fraction of rows that may end with an error before the pipeline counts as failed",
    )
    deadline: DeadlineSpec = Field(
        default_factory=DeadlineSpec,
        description="when results are due ({within: 6h} from the first job, or {at: <ISO time>}, and a margin): "
        "at the batch cutoff, what cannot finish in batch by then is stopped and answered on demand",
    )
    cache: bool = Field(
        default=True,
        description="the record cache: a record whose exact request (model, invocation type, modelInput bytes) an "
        "earlier job or call of this pipeline answered successfully takes that answer instead of being paid again",
    )
    canary: CanarySpec = Field(
        default_factory=CanarySpec,
        description="before the first batch job of these request settings, canary.records real records go through "
        "the runtime API and are checked like a job's output (0 turns it off)",
    )
    execution: ExecutionSpec = Field(
        default_factory=ExecutionSpec,
        description="the concurrency pool of the shard steps and the stage jobs' executor",
    )
    stall_after: str = Field(
        default="60m",
        description="a job InProgress whose processed count has not moved this long, or Submitted/Scheduled this "
        "long, is stalled: batch_jobs' job_progress check warns (under a deadline it is stopped at the cutoff)",
    )

    @field_validator("stall_after")
    @classmethod
    def _stall(cls, v: str) -> str:
        return _duration(v, "stall_after") or v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PIPELINE_NAME.fullmatch(v) or "__" in v:
            raise ValueError(f"{v!r} must be 1-40 characters of [a-z0-9_], starting with a letter, without '__'")
        return v

    @field_validator("output_uri")
    @classmethod
    def _output(cls, v: str) -> str:
        parse_s3_uri(v, what="output_uri")
        return v.rstrip("/")

    @field_validator("role_arn")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+", v):
            raise ValueError(f"{v!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            check_tag(key, value)
        return v

    @field_validator("expected_bucket_owner")
    @classmethod
    def _owner(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9]{12}", v):
            raise ValueError(f"{v!r} is not a 12-digit AWS account id")
        return v

    @field_validator("kms_key_id")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(
            r"(arn:aws(-[^:]+)?:kms:[a-z0-9-]+:[0-9]{12}:)?(key/)?[a-zA-Z0-9/_-]+|"
            r"(arn:aws(-[^:]+)?:kms:[a-z0-9-]+:[0-9]{12}:)?alias/[a-zA-Z0-9/_-]+",
            v,
        ):
            raise ValueError(f"{v!r} is not a KMS key id, key ARN or alias")
        return v

    @model_validator(mode="after")
    def _derived(self) -> PipelineSpec:
        prefix = self.job_prefix
        if len(prefix) > JOB_NAME_MAX - JOB_NAME_SUFFIX_MAX:
            raise ValueError(
                f"job_name_prefix {prefix!r} is longer than {JOB_NAME_MAX - JOB_NAME_SUFFIX_MAX} characters"
            )
        try:
            validate_job_name(prefix)
        except ValueError as e:
            raise ValueError(f"job_name_prefix: {e}") from None
        if self.source.pipeline == self.name:
            raise ValueError(f"source.pipeline {self.name!r} is this pipeline: a chain reads another one")
        adapter = self.adapter()  # model id, prompt and inference settings fit together
        if self.output_schema is not None and adapter.kind != "text":
            raise ValueError("output_schema applies to text models, not embedding models")
        self._check_truncated_retry()
        if (refused := tier_refusal(self.model.id, self.retry.service_tier)) is not None:
            raise ValueError(f"retry.service_tier: {refused}")
        quotas = self.quotas()
        if quotas.min_records_per_job > quotas.max_records_per_shard:
            raise ValueError(
                f"shards.min_records ({quotas.min_records_per_job}) exceeds shards.max_records "
                f"({quotas.max_records_per_shard})"
            )
        return self

    def _check_truncated_retry(self) -> None:
        raised = self.retry.truncated_max_tokens
        if raised is None:
            return
        if self.output_schema is None:
            raise ValueError("retry.truncated_max_tokens applies to pipelines with an output_schema")
        if raised <= self.inference.max_tokens:
            raise ValueError(
                f"retry.truncated_max_tokens ({raised}) must be larger than inference.max_tokens "
                f"({self.inference.max_tokens})"
            )
        try:
            self.adapter(max_tokens=raised)  # within the model's own limit
        except ValueError as e:
            raise ValueError(f"retry.truncated_max_tokens: {e}".replace("inference.max_tokens", "it")) from None

    def settings_digest(self, sections: frozenset[str] = RENDER_SETTINGS) -> str:
        """A short sha256 of these sections of the spec (by default the ones every request line is rendered
        from, a resent one included): lines rendered under another digest are not this spec's."""
        settings = self.model_dump(mode="json", include=set(sections))
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def resend_adapter(self) -> ModelAdapter | None:
        """The adapter truncated structured answers are resent with (``retry.truncated_max_tokens``), or None."""
        raised = self.retry.truncated_max_tokens
        return self.adapter(max_tokens=raised) if raised is not None else None

    @property
    def job_prefix(self) -> str:
        return self.job_name_prefix or self.name.replace("_", "-")

    def adapter(self, max_tokens: int | None = None) -> ModelAdapter:
        """The model adapter of these settings (``max_tokens``: with another token limit)."""
        inference = self.inference
        return adapter_for(
            self.model.id,
            self.model.invocation_type,
            PromptSettings(self.prompt.template, self.prompt.system, self.prompt.input_column, self.structured),
            InferenceSettings(
                max_tokens=max_tokens or inference.max_tokens,
                temperature=inference.temperature,
                top_p=inference.top_p,
                stop=tuple(inference.stop),
                dimensions=inference.dimensions,
                normalize=inference.normalize,
                input_type=inference.input_type,
                truncate=inference.truncate,
            ),
        )

    def quotas(self, overrides: dict[str, dict[str, Any]] | None = None) -> BatchQuotas:
        """The model's quotas, narrowed by this spec's ``shards:`` limits."""
        quotas = quotas_for(self.model.id, overrides)
        s = self.shards
        narrowed = {
            "max_records_per_file": min(quotas.max_records_per_file, s.max_records or quotas.max_records_per_file),
            "max_records_per_job": min(quotas.max_records_per_job, s.max_records or quotas.max_records_per_job),
            "max_file_bytes": min(quotas.max_file_bytes, s.max_file_bytes or quotas.max_file_bytes),
            "max_job_bytes": min(quotas.max_job_bytes, s.max_job_bytes or quotas.max_job_bytes),
            # a spec may raise the minimum (fewer, larger jobs) but never go below the model's own
            "min_records_per_job": max(quotas.min_records_per_job, s.min_records or 0),
        }
        return quotas.with_overrides(narrowed)

    @property
    def structured(self) -> OutputSchema | None:
        """The checked output_schema (None when the pipeline asks for free text)."""
        if self.output_schema is None:
            return None
        try:
            return OutputSchema.parse(self.output_schema, reserved=_PIPELINE_COLUMNS)
        except SchemaError as e:
            raise ValueError(str(e)) from None

    def check_columns(self, columns: list[str], source: str) -> None:
        """Raise SpecError if the prompt or id column names a column the source lacks, or the source has a column
        named like one the pipeline adds (its rows would have it twice: refused before any job is paid)."""
        ours = [c for c in columns if c in _PIPELINE_COLUMNS and c != RECORD_ID]  # record_id: see id_column
        if ours:
            raise SpecError(
                f"pipeline {self.name!r}: {source} has column(s) {ours}, which the pipeline adds to every row "
                f"({', '.join(sorted(_PIPELINE_COLUMNS - {RECORD_ID}))}); rename them in the source"
            )
        clash = [p for p in (self.structured.properties if self.structured else []) if p in columns]
        if clash:
            raise SpecError(
                f"pipeline {self.name!r}: output_schema properties {clash} are also columns of {source}; rename them"
            )
        needed = list(self.adapter().input_columns())
        if self.source.id_column:
            needed.append(self.source.id_column)
        missing = [c for c in needed if c not in columns]
        if missing:
            raise SpecError(
                f"pipeline {self.name!r}: column(s) {missing} used by the prompt/id_column are not in "
                f"{source}; available columns: {columns}"
            )


def _where(loc: tuple[Any, ...]) -> str:
    """'attributes.model.id' from a pydantic error location."""
    parts = ["attributes"]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _did_you_mean(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """'; did you mean 'max_tokens'?' for an unknown key one typo away from a field at its level."""
    for item in loc[:-1]:
        field = model.model_fields.get(str(item))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    near = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""


S = TypeVar("S", bound="PipelineSpec")


def parse_pipeline(
    data: Any,
    *,
    origin: str = "<defs.yaml>",
    base_dir: Path | None = None,
    spec_class: type[S] = PipelineSpec,  # type: ignore[assignment]
) -> S:
    """Validate a component's attributes; local source paths resolve against ``base_dir``.

    Raises SpecError with one line per problem, each naming ``origin`` and the field.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: attributes must be a mapping of pipeline fields, got {type(data).__name__}")
    uri = (data.get("source") or {}).get("uri") if isinstance(data.get("source"), dict) else None
    if base_dir is not None and isinstance(uri, str) and uri and not is_s3_uri(uri) and not Path(uri).is_absolute():
        data = {**data, "source": {**data["source"], "uri": str((base_dir / uri).resolve())}}
    try:
        return spec_class.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = _where(tuple(x for x in err["loc"] if x not in ("function-after",)))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key" + _did_you_mean(spec_class, err["loc"])
            lines.append(f"{origin}: {where}: {msg}")
        raise SpecError("\n".join(lines)) from None


@functools.cache
def schema_model(model: type[BaseModel], optional: frozenset[str] = frozenset()) -> type[BaseModel]:
    """The same fields, types, bounds and descriptions as ``model``, without its validators.

    Fields named in ``optional`` may be left out (they get a value when the component loads).

    The YAML schema of the component (what ``dg check yaml`` and editors validate against) before
    ``{{ env.X }}`` templates are rendered; the full validation runs after rendering.
    """
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = schema_model(annotation)
        elif get_origin(annotation) is not None and any(
            isinstance(a, type) and issubclass(a, BaseModel) for a in get_args(annotation)
        ):
            raise TypeError(f"{model.__name__}.{name}: nested models only as plain fields")
        if name in optional:
            annotation, info = annotation | None, FieldInfo.merge_field_infos(info, default=None)
        fields[name] = (annotation, info)
    return create_model(f"{model.__name__}Attributes", __base__=_Strict, __doc__=model.__doc__, **fields)
