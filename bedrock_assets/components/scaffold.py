"""``dg scaffold defs bedrock_assets.components.BedrockBatchPipeline <folder>``: a defs.yaml to fill in.

The first pipeline scaffolded in a project also gets ``bedrock_resources.py`` next to its folder,
binding the resources every pipeline needs, unless the project already defines them.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

DEFS_YAML = """\
type: {type_name}

attributes:
  # name: {name}                           # default: this folder's name; [a-z][a-z0-9_]*
  source:
    uri: s3://my-bucket/path/to/data.parquet   # local path or s3://, a file or a prefix; parquet | csv | jsonl
    # id_column: id                          # a unique column; default: ids from row positions
  model:
    id: anthropic.claude-3-5-haiku-20241022-v1:0   # or amazon.titan-embed-text-v2:0, us./eu. profiles, ARNs
    # invocation_type: Converse              # Converse-shaped bodies (Claude, Nova, Llama, Mistral)
  prompt:
    template: "Answer briefly: {{question}}"  # {{column}} placeholders (embeddings: input_column: text)
    # system: You are a careful assistant.
  inference:
    max_tokens: 512
  output_uri: s3://my-bucket/bedrock/{slug}   # everything the pipeline writes goes under here
  role_arn: "{{{{ env.BEDROCK_ROLE_ARN }}}}"    # the service role Bedrock assumes
  # shards: {{max_records: 50000}}            # narrows the model's batch quotas, never loosens them
  # job_name_prefix: {slug}                 # default: name with _ -> -; <= 40 chars of [a-zA-Z0-9+.-]
  # timeout_hours: 24                        # 24-168
  # tags: {{team: data}}
  # output_schema: {{type: object, properties: {{label: {{type: string}}}}, required: [label]}}  # typed columns
  # retry:
  #   max_rounds: 2                          # retry rounds for retriable records (0: none)
  #   small_remainder: on_demand             # fewer than a job's minimum left: on_demand | leave
  #   on_demand_concurrency: 4
  #   service_tier: default                  # on-demand calls: default | flex | priority (where offered)
  #   max_job_attempts: 2                    # Expired / transiently Failed first-pass jobs resubmitted
  #   truncated_max_tokens: 1024             # structured answers cut off at max_tokens: sent once more
  # deadline: {{within: 6h, margin: 15m}}      # or {{at: 2026-12-24T06:00:00Z}}: at the batch cutoff the
  #                                          # rest is stopped and answered on demand to finish in time
  # cache: true                             # false: never re-use an answer of an earlier job
  # canary: {{records: 3}}                  # real records on demand before the first job (0: off)
  # stall_after: 60m                         # no progress this long: job_progress warns
  # execution: {{pool: bedrock_assets/{name}, executor: in_process}}  # the shard steps' concurrency
  #                                          # pool (its limit is the deployment's); multiprocess: a
  #                                          # process per step of the stage jobs
  # budget_usd: 25.0                         # jobs are created only while the worst case of all fits
  # max_error_rate: 0.0                      # default 0: ONE failed row left after the retry rounds (a
  #                                          # leftover 429) makes the run fail (exit 1, red); e.g. 0.001
  # max_truncated_rate: 0.01                 # answers cut off at max_tokens before answers_complete warns
  # expected_bucket_owner: "123456789012"    # on every S3 call and the job
  # kms_key_id: alias/bedrock-data           # SSE-KMS for every object written, and the job's output
  # automation_sensor: true                  # false: your project's own automation sensor covers these assets
"""

RESOURCES_PY = '''\
"""Resources of the Bedrock batch pipelines in this project (see bedrock_assets.BedrockBatchResource)."""

import dagster as dg

from bedrock_assets import BedrockBatchResource, JobLedgerResource, SharedS3Resource


@dg.definitions
def bedrock_resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "s3": SharedS3Resource(),  # dagster-aws's S3Resource, one client per process
            # account-wide settings: role_arn, quota_overrides, tags, output_kms_key_id, expected_bucket_owner, ...
            "bedrock": BedrockBatchResource(),
            "bedrock_ledger": JobLedgerResource(table_name="bedrock-assets-jobs"),
        }
    )
'''


def _defines_bedrock_resources(project_root: Path) -> bool:
    for path in project_root.rglob("*.py"):
        if any(part.startswith(".") or part in ("site-packages", "node_modules") for part in path.parts):
            continue
        try:
            if "BedrockBatchResource(" in path.read_text(errors="ignore"):
                return True
        except OSError:
            continue
    return False


class BedrockBatchPipelineScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        folder = Path(request.target_path)
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^a-z0-9_]", "_", folder.name.lower())
        (folder / "defs.yaml").write_text(
            DEFS_YAML.format(type_name=request.type_name, name=name, slug=name.replace("_", "-"))
        )
        root = Path(request.project_root) if request.project_root else folder.parent
        if not _defines_bedrock_resources(root):
            (folder.parent / "bedrock_resources.py").write_text(RESOURCES_PY)
