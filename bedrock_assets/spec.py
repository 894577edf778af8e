"""Pipeline spec files: YAML describing one or more batch-inference pipelines.

Every field is validated on load; an error names the file, the pipeline and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bedrock_assets.models import InferenceSettings, ModelAdapter, PromptSettings, adapter_for
from bedrock_assets.quotas import BatchQuotas, quotas_for
from bedrock_assets.uris import JOB_NAME_MAX, is_s3_uri, parse_s3_uri, validate_job_name

PIPELINE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
SOURCE_FORMATS = ("parquet", "csv", "jsonl")
# job name = "<prefix>-<shard key>-<digest>"; the shard key and digest take at most this many chars
_JOB_NAME_SUFFIX = len("-s00000-") + 10 + len("-a999")


class SpecError(ValueError):
    """A spec file that cannot be used, with the location of the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    uri: str = Field(description="local path or s3:// URI of a file or a prefix/directory")
    format: Literal["parquet", "csv", "jsonl"] | None = Field(
        default=None, description="inferred from the file extension when omitted"
    )
    id_column: str | None = Field(default=None, description="unique record id column; derived when omitted")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty")
        if is_s3_uri(v):
            parse_s3_uri(v, what="source.uri")
        return v


class ModelSpec(_Strict):
    id: str = Field(description="model id, inference profile id or ARN")
    invocation_type: Literal["InvokeModel", "Converse"] = "InvokeModel"


class PromptSpec(_Strict):
    template: str | None = Field(default=None, description="text models: {column} placeholders")
    system: str | None = None
    input_column: str | None = Field(default=None, description="embedding models: the text column")


class InferenceSpec(_Strict):
    max_tokens: int = Field(default=512, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] = Field(default_factory=list)
    dimensions: int = 1024
    normalize: bool = True


class ShardSpec(_Strict):
    max_records: int | None = Field(default=None, gt=0)
    min_records: int | None = Field(default=None, gt=0)
    max_file_bytes: int | None = Field(default=None, gt=0)
    max_job_bytes: int | None = Field(default=None, gt=0)


class PipelineSpec(_Strict):
    name: str
    source: SourceSpec
    model: ModelSpec
    prompt: PromptSpec = PromptSpec()
    inference: InferenceSpec = InferenceSpec()
    output_uri: str = Field(description="s3:// prefix for shard inputs, Bedrock outputs and results")
    shards: ShardSpec = ShardSpec()
    role_arn: str | None = Field(default=None, description="service role Bedrock assumes; resource default if unset")
    job_name_prefix: str | None = None
    timeout_hours: int = Field(default=24, ge=24, le=168)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PIPELINE_NAME.fullmatch(v):
            raise ValueError("must be 1-40 characters of [a-z0-9_], starting with a letter")
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

    @model_validator(mode="after")
    def _derived(self) -> "PipelineSpec":
        prefix = self.job_prefix
        if len(prefix) > JOB_NAME_MAX - _JOB_NAME_SUFFIX:
            raise ValueError(f"job_name_prefix {prefix!r} is longer than {JOB_NAME_MAX - _JOB_NAME_SUFFIX} characters")
        try:
            validate_job_name(prefix)
        except ValueError as e:
            raise ValueError(f"job_name_prefix: {e}") from None
        self.adapter()  # model id, prompt and inference settings fit together
        quotas = self.quotas()
        if quotas.min_records_per_job > quotas.max_records_per_shard:
            raise ValueError(
                f"shards.min_records ({quotas.min_records_per_job}) exceeds shards.max_records "
                f"({quotas.max_records_per_shard})"
            )
        return self

    @property
    def job_prefix(self) -> str:
        return self.job_name_prefix or self.name.replace("_", "-")

    def adapter(self) -> ModelAdapter:
        inference = self.inference
        return adapter_for(
            self.model.id,
            self.model.invocation_type,
            PromptSettings(self.prompt.template, self.prompt.system, self.prompt.input_column),
            InferenceSettings(
                max_tokens=inference.max_tokens,
                temperature=inference.temperature,
                top_p=inference.top_p,
                stop=tuple(inference.stop),
                dimensions=inference.dimensions,
                normalize=inference.normalize,
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


class SpecFile(_Strict):
    pipelines: list[PipelineSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "SpecFile":
        seen: set[str] = set()
        for p in self.pipelines:
            if p.name in seen:
                raise ValueError(f"pipeline name {p.name!r} is used twice")
            seen.add(p.name)
        return self


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """'pipelines[0] (cot_answers).model.id' from a pydantic error location."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and isinstance(node[item], dict) else None
            parts[-1] += f"[{item}]" + (f" ({name})" if name and len(parts) == 1 else "")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def parse_specs(data: Any, *, origin: str = "<spec>", base_dir: Path | None = None) -> list[PipelineSpec]:
    """Validate already-loaded YAML/dict data; local source paths resolve against ``base_dir``."""
    try:
        spec = SpecFile.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = _where(tuple(x for x in err["loc"] if x not in ("function-after",)), data)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{origin}: {where}: {msg}")
        raise SpecError("\n".join(lines)) from None
    if base_dir is None:
        return spec.pipelines
    resolved = []
    for p in spec.pipelines:
        uri = p.source.uri
        if not is_s3_uri(uri) and not Path(uri).is_absolute():
            p = p.model_copy(update={"source": p.source.model_copy(update={"uri": str((base_dir / uri).resolve())})})
        resolved.append(p)
    return resolved


def load_specs(path: str | Path) -> list[PipelineSpec]:
    """Load and validate a spec file; raises SpecError naming file and field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    return parse_specs(data, origin=str(path), base_dir=path.parent)


def check_columns(spec: PipelineSpec, columns: list[str], source: str) -> None:
    """Raise SpecError if the prompt or id column names a column the source lacks."""
    needed = list(spec.adapter().input_columns())
    if spec.source.id_column:
        needed.append(spec.source.id_column)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise SpecError(
            f"pipeline {spec.name!r}: column(s) {missing} used by the prompt/id_column are not in "
            f"{source}; available columns: {columns}"
        )
