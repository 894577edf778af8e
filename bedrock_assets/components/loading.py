"""Pipelines from defs.yaml files outside a running code location (the CLI, scripts, notebooks)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bedrock_assets.components.bedrock_batch_pipeline import BedrockBatchPipeline
from bedrock_assets.spec import SpecError

COMPONENT_TYPE = "bedrock_assets.components.BedrockBatchPipeline"
_TYPE_NAMES = (
    COMPONENT_TYPE,
    "bedrock_assets.components.bedrock_batch_pipeline.BedrockBatchPipeline",
    "bedrock_assets.BedrockBatchPipeline",
)


def _documents(path: Path) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (expected a defs.yaml in UTF-8)") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    for doc in docs:
        if not isinstance(doc, dict) or "type" not in doc:
            raise SpecError(f"{path}: expected a component file with 'type:' and 'attributes:'")
    return docs


def load_pipelines(path: Path) -> list[BedrockBatchPipeline]:
    """The BedrockBatchPipeline components of a defs.yaml, of a component folder, or of every folder below one.

    Raises SpecError naming the file and field when one does not validate, or when there is none.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif (path / "defs.yaml").is_file():
        files = [path / "defs.yaml"]
    elif path.is_dir():
        files = sorted(path.rglob("defs.yaml"))
    else:
        raise SpecError(f"{path}: no such file or folder")
    pipelines = []
    for file in files:
        for doc in _documents(file):
            if doc["type"] not in _TYPE_NAMES:
                if path.is_file() or file.parent == path:
                    raise SpecError(f"{file}: type is {doc['type']!r}, not {COMPONENT_TYPE}")
                continue
            pipelines.append(BedrockBatchPipeline.from_attributes(doc.get("attributes") or {}, file.parent.resolve()))
    if not pipelines:
        raise SpecError(f"{path}: no {COMPONENT_TYPE} defs.yaml found")
    names = [p.name for p in pipelines]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SpecError(f"{path}: pipeline name(s) {repeated} are used by more than one defs.yaml")
    return pipelines
