"""deploy/: each instance file passes Dagster's own config validation, class by class, and the ECS and Helm
variants keep the limits, monitoring and sensors of deploy/dagster.yaml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._serdes import class_from_code_pointer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
INSTANCES = [DEPLOY / "dagster.yaml", DEPLOY / "ecs" / "dagster.yaml"]
PG_ENV = {
    "DAGSTER_PG_HOST": "db.example.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_PG_DB": "dagster",
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def class_config(section: dict[str, Any]) -> tuple[type, dict[str, Any]]:
    return class_from_code_pointer(section["module"], section["class"]), section.get("config") or {}


@pytest.mark.parametrize("path", INSTANCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_instance_file_passes_dagsters_validation_and_each_class_its_own_config(path, monkeypatch):
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    config, custom = dagster_instance_config(str(path.parent), path.name)
    assert custom is None
    from dagster_postgres import DagsterPostgresStorage

    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    assert storage.value["postgres_db"]["port"] == 5432  # the environment's value, as an int
    for section in ("run_coordinator", "run_launcher"):
        klass, settings = class_config(config[section])
        processed = process_config(klass.config_type(), settings)
        assert processed.success, (section, processed.errors)
    assert config["run_monitoring"]["enabled"] is True


def test_a_wrong_key_is_refused_by_the_same_validation(tmp_path, monkeypatch):
    """The validation above can fail: a misspelt limit is an error naming the key."""
    broken = load(INSTANCES[0])
    broken["concurrency"]["runs"]["max_concurent_runs"] = broken["concurrency"]["runs"].pop("max_concurrent_runs")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(DagsterInvalidConfigError, match="max_concurent_runs"):
        dagster_instance_config(str(tmp_path), "dagster.yaml")


def test_the_ecs_instance_is_the_base_instance_with_the_ecs_run_launcher():
    base, ecs = load(INSTANCES[0]), load(INSTANCES[1])
    assert ecs["run_launcher"]["class"] == "EcsRunLauncher"
    assert {k: v for k, v in ecs.items() if k != "run_launcher"} == {
        k: v for k, v in base.items() if k != "run_launcher"
    }
    # the pipeline and stage tags the queue limits use are propagated to the ECS tasks
    limited = {limit["key"] for limit in base["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limited <= set(ecs["run_launcher"]["config"]["propagate_tags"]["allow_list"])


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def camelized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k if k == "applyLimitPerUniqueValue" else camel(k): camelized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelized(v) for v in value]
    return value


def test_the_helm_values_keep_the_base_instances_limits_monitoring_and_sensors():
    base, values = load(INSTANCES[0]), load(DEPLOY / "k8s" / "values.yaml")
    assert values["concurrency"]["enabled"] is True
    assert {k: v for k, v in values["concurrency"].items() if k != "enabled"} == camelized(base["concurrency"])
    daemon = values["dagsterDaemon"]
    assert daemon["runMonitoring"] == camelized(base["run_monitoring"])
    assert daemon["sensors"] == camelized(base["sensors"])
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued == camelized(base["run_coordinator"]["config"])
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False  # an external database, like the other two


def test_the_workspace_names_a_grpc_code_server(monkeypatch):
    monkeypatch.setenv("BEDROCK_ASSETS_CODE_SERVER_HOST", "code-server.internal")
    monkeypatch.setenv("BEDROCK_ASSETS_CODE_SERVER_PORT", "4000")
    processed = process_workspace_config(load(DEPLOY / "workspace.yaml"))
    assert processed.success, processed.errors
    (entry,) = processed.value["load_from"]
    assert entry["grpc_server"]["port"] == 4000  # the port deploy/Dockerfile's code server listens on


def test_the_dockerfile_copies_what_exists_and_installs_extras_that_exist():
    text = (DEPLOY / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in re.findall(r"'\.\[([a-z0-9,-]+)\]'", text):
        assert set(extra.split(",")) <= set(extras), extra
    for source in re.findall(r"^COPY (\S+) ", text, flags=re.M):
        assert (ROOT / source).exists(), source
    module = re.search(r'"--module-name", "([\w.]+)"', text)
    assert module is not None and (ROOT / (module.group(1).replace(".", "/") + ".py")).exists()
    # the Dagster packages are pinned in lockstep: the extras' integrations at 0.29.27 with dagster 1.13.27
    assert extras["deploy"] == ["dagster-postgres==0.29.27"] and extras["k8s"] == ["dagster-k8s==0.29.27"]
