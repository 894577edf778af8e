"""The ``BedrockBatchPipeline`` component: one pipeline spec becomes one asset group.

A table of contents: each node of the graph is built by the graph module named after it (its
definition, checks and work); this file puts them together with the stage jobs and the sensors.

    raw_dataset -> jsonl_shards[shard] -> batch_jobs[shard] -(job_completion sensor)-> batch_job_outputs[shard]
    -> merged_results[shard] -> merged_dataset
                               -> retry_rounds (registers retry shards r1-00000... of the same shard assets)
"""

import os
import re
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import BaseModel, Field

from bedrock_assets.components.scaffold import BedrockBatchPipelineScaffolder
from bedrock_assets.graph import (
    batch_job_outputs,
    batch_jobs,
    job_completion,
    jsonl_shards,
    merged_dataset,
    merged_results,
    raw_dataset,
    retry_rounds,
    stop,
)
from bedrock_assets.keys import STAGES, TAG_PIPELINE, PipelineKeys, stage_tags
from bedrock_assets.pipeline import Pipeline
from bedrock_assets.spec import ModelSpec, PipelineSpec, SpecError, parse_pipeline, schema_model

# BackfillPolicy on assets is marked beta in Dagster 1.13; we rely on it for one run per range of shards.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=r".*backfill_policy.*")

NODES = (raw_dataset, jsonl_shards, batch_jobs, batch_job_outputs, merged_results, retry_rounds, merged_dataset)


def build_pipeline_defs(spec: PipelineSpec, automation_sensor: bool = True) -> dg.Definitions:
    """All assets, checks, stage jobs and sensors of one pipeline."""
    p = Pipeline.of(spec)
    jobs = stage_jobs(p)
    sensors: list[Any] = [job_completion.build(p, jobs)]
    if automation_sensor:
        sensors.append(automation(p))
    return dg.Definitions(
        assets=[node.build(p) for node in NODES],
        jobs=[*jobs.values(), stop.build(p), stop.build_resume(p)],
        sensors=sensors,
    )


EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def stage_jobs(p: Pipeline) -> dict[str, UnresolvedAssetJobDefinition]:
    """One asset job per stage (prepare, submit, merge, retry, publish), named and tagged after it."""
    return {
        stage: dg.define_asset_job(
            p.keys.job(stage),
            selection=[p.keys.asset(n) for n in nodes],
            tags=stage_tags(p.name, stage),
            description=f"{p.name}: {stage} ({', '.join(nodes)})",
            # by default the steps of a stage run one after another over the same shards: one process, no
            # step subprocesses, and what a step wrote is read back from this process's local copies
            executor_def=EXECUTORS[p.spec.execution.executor],
        )
        for stage, nodes in STAGES.items()
    }


def automation(p: Pipeline) -> dg.AutomationConditionSensorDefinition:
    """The pipeline's own automation sensor (RUNNING), for projects whose sensor does not cover it."""
    return dg.AutomationConditionSensorDefinition(
        p.keys.automation_sensor,
        target=p.keys.selection,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=10,
        run_tags={TAG_PIPELINE: p.name},
        description=f"Carries {p.name!r} from a new raw_dataset to submitted jobs, and from merged shards "
        "to merged_dataset.",
    )


warnings.filterwarnings("ignore", category=UserWarning, message=r'Field name "model" in "BedrockBatchPipeline"')


@dg.scaffold_with(BedrockBatchPipelineScaffolder)
class BedrockBatchPipeline(dg.Component, dg.Resolvable, PipelineSpec):
    """Amazon Bedrock batch inference over a dataset, as a group of Dagster assets.

    The attributes are the pipeline spec: a source (Parquet / CSV / JSONL, local or s3://), a model
    and prompt, and an s3:// output_uri. Rows become Bedrock batch requests, shards are submitted
    within the model's quotas, finished jobs are merged back onto their rows. ``name`` defaults to
    the component's folder name; ``{{ env.X }}`` works in any text field.

    Needs the resources ``s3`` (dagster-aws S3Resource), ``bedrock`` (BedrockBatchResource) and
    ``bedrock_ledger`` (JobLedgerResource) in the project.
    """

    # redeclared: Resolvable has a classmethod named ``model`` that pydantic would take for this field's default
    model: ModelSpec = Field(description="the Bedrock model and invocation type")  # type: ignore[assignment]
    automation_sensor: bool = Field(
        default=True,
        description="define a RUNNING automation sensor for this pipeline's assets; set false if your "
        "project's own automation sensor covers them",
    )

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        """The YAML schema: the spec's fields and bounds, checked before templates are rendered.

        (Resolvable's ``model()`` is shadowed by the spec's own ``model`` field, so it is not used.)
        """
        return schema_model(cls, frozenset({"name"}))

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> "BedrockBatchPipeline":
        raw = attributes.model_dump(exclude_unset=True) if attributes is not None else {}
        return cls.from_attributes(raw, Path(context.path), context.resolution_context)

    @classmethod
    def from_attributes(
        cls, raw: dict[str, Any], folder: Path, resolution: dg.ResolutionContext | None = None
    ) -> "BedrockBatchPipeline":
        """The pipeline a defs.yaml in ``folder`` describes: templates rendered, then fully validated."""
        try:
            raw = _render_templates(raw, (resolution or dg.ResolutionContext.default()).at_path("attributes"))
        except TemplateError as e:
            raise SpecError(f"{defs_yaml(folder)}: {e}") from None
        raw.setdefault("name", folder.name)
        return parse_pipeline(raw, origin=str(defs_yaml(folder)), base_dir=folder, spec_class=cls)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_pipeline_defs(self, self.automation_sensor)


def defs_yaml(folder: Path) -> Path:
    for name in ("defs.yaml", "defs.yml", "component.yaml"):
        if (folder / name).exists():
            return folder / name
    return folder


class TemplateError(ValueError):
    """A ``{{ env.X }}`` the pipeline cannot take: an unset variable, or one that holds a credential."""


_ENV_REFERENCE = re.compile(r"\benv\.([A-Za-z_][A-Za-z0-9_]*)")
# names that mark a credential: rendered, it would go into prompts, tags, S3 objects and Bedrock job tags
_CREDENTIAL = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)


def _check_env_references(text: str, where: str) -> None:
    """TemplateError for a ``{{ env.X }}`` whose X is unset (named at load, not at submit) or a credential."""
    for name in _ENV_REFERENCE.findall(text):
        if _CREDENTIAL.search(name):
            raise TemplateError(
                f"{where}: {{{{ env.{name} }}}} looks like a credential; no field of a pipeline needs one, and a "
                "rendered value would be written into prompts, tags and S3 objects: use another variable"
            )
        if name not in os.environ:
            raise TemplateError(
                f"{where}: {{{{ env.{name} }}}} names an environment variable that is not set: set {name} "
                f"(export {name}=...) or write the value in the defs.yaml"
            )


def _render_templates(value: Any, context: Any) -> Any:
    """Render ``{{ ... }}`` templates in text fields; other text is kept exactly (prompts stay as written)."""
    if isinstance(value, dict):
        return {k: _render_templates(v, context.at_path(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_templates(v, context.at_path(i)) for i, v in enumerate(value)]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        _check_env_references(value, ".".join(str(p) for p in context.path))
        rendered = context.resolve_value(value)
        return rendered if isinstance(rendered, str) or rendered is None else str(rendered)
    return value


__all__ = ["BedrockBatchPipeline", "PipelineKeys", "SpecError", "build_pipeline_defs"]
