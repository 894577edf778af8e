"""The Dagster code location: every component under ``bedrock_assets/defs/`` (the sample pipelines and resources)."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
