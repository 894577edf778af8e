"""Reading a pipeline's results back: the merged dataset as a pandas DataFrame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pyarrow.parquet as pq

from bedrock_assets.layout import PipelineLayout
from bedrock_assets.spec import PipelineSpec
from bedrock_assets.storage import S3Access, local_copy

if TYPE_CHECKING:
    import pandas


def read_merged_dataset(
    pipeline: PipelineSpec | str | Path, columns: Sequence[str] | None = None, s3: Any = None
) -> pandas.DataFrame:
    """A pipeline's merged dataset (every input row with its output or error) as a DataFrame.

    ``pipeline`` is the pipeline's ``defs.yaml`` (or its folder) or a loaded spec; S3 is reached
    with boto3's standard configuration unless a client is given.

        from bedrock_assets import read_merged_dataset
        df = read_merged_dataset("bedrock_assets/defs/cot_answers")
    """
    if not isinstance(pipeline, PipelineSpec):
        from bedrock_assets.components.loading import load_pipelines

        (pipeline,) = load_pipelines(Path(pipeline))
    loc = PipelineLayout.for_uri(pipeline.output_uri).merged_dataset
    access = S3Access(s3 or boto3.client("s3"), pipeline.expected_bucket_owner)
    with local_copy(access, loc) as path:
        return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()
