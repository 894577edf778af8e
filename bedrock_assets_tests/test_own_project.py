"""The README's own-project path, as written: `create-dagster project my_project`, the component listed,
scaffolded and filled in, `dg check defs`, then the pipeline run on the local stack from the project's root.

This virtualenv stands for the project's environment (it has bedrock_assets installed, like
`pip install '/path/to/bedrock_assets[local-stack]'` does), so no virtualenv is made per run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import pytest

from bedrock_assets_tests.helpers import COMPONENT, ROLE, dg_command

BIN = Path(sys.executable).parent

# the README's defs.yaml for reviews_summary, verbatim
DEFS_YAML = """\
type: bedrock_assets.components.BedrockBatchPipeline

attributes:
  source:
    uri: s3://my-bucket/reviews/2026-11/          # a file or a prefix; parquet | csv | jsonl
  model:
    id: anthropic.claude-3-5-haiku-20241022-v1:0
  prompt:
    template: "Summarize this review in one sentence: {review_text}"
  output_uri: s3://my-bucket/bedrock/reviews-summary
  role_arn: "{{ env.BEDROCK_ROLE_ARN }}"
"""

# the README's upload of a small source into the local stack's S3, verbatim
UPLOAD = """
import boto3
s3 = boto3.client('s3')
s3.create_bucket(Bucket='my-bucket')
rows = ''.join(f'Review {i}: works well but the battery dies by noon.\\n' for i in range(150))
s3.put_object(Bucket='my-bucket', Key='reviews/2026-11/reviews.csv', Body='review_text\\n' + rows)
"""
SOURCE_ROWS = 150

READ_BACK = "from bedrock_assets import read_merged_dataset; print(len(read_merged_dataset('{path}')))"


class UserShell:
    """A new terminal with this virtualenv active: nothing of ours or AWS's set, ``env`` what was exported."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.unset = tuple(k for k in os.environ if k.startswith(("AWS_", "BEDROCK_")) or k == "DAGSTER_HOME")
        # DAGSTER_DG_UPDATE_CHECK_ENABLED=0: no PyPI call from create-dagster's "new version available" check
        self.env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0"}

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        environment = {k: v for k, v in os.environ.items() if k not in self.unset} | {"VIRTUAL_ENV": sys.prefix}
        return subprocess.run(
            list(args), cwd=self.cwd, env=environment | self.env, capture_output=True, text=True, timeout=timeout
        )

    def dg(self, *args: str) -> subprocess.CompletedProcess:
        return dg_command(*args, cwd=self.cwd, env=self.env, unset=self.unset)

    def eval_exports(self, text: str) -> None:
        """``eval "$(bedrock-assets env ...)"``: its ``export K=V`` lines."""
        for line in text.splitlines():
            if line.startswith("export "):
                key, value = line.removeprefix("export ").split("=", 1)
                self.env[key] = value


def make_project(tmp_path: Path) -> tuple[Path, UserShell]:
    """mkdir my_project && cd my_project; create-dagster project .; the component listed, scaffolded, filled in."""
    project = tmp_path / "my_project"
    project.mkdir()
    shell = UserShell(project)  # from the project's root
    made = shell("create-dagster", "project", ".", "--no-uv-sync")
    assert made.returncode == 0, made.stdout + made.stderr
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies == [f"dagster=={version('dagster')}"]  # the dagster this package pins: pip resolves both

    listed = shell.dg("list", "components", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert COMPONENT in {c["key"] for c in json.loads(listed.stdout)["items"]}

    scaffolded = shell.dg("scaffold", "defs", COMPONENT, "reviews_summary")
    assert scaffolded.returncode == 0, scaffolded.stderr[-2000:]
    defs = project / "src" / "my_project" / "defs"
    files = sorted(str(p.relative_to(defs)) for p in defs.rglob("*") if p.is_file())
    assert files == ["__init__.py", "bedrock_resources.py", "reviews_summary/defs.yaml"]
    assert "JobLedgerResource(" in (defs / "bedrock_resources.py").read_text()
    assert (defs / "reviews_summary" / "defs.yaml").read_text().startswith(f"type: {COMPONENT}\n")
    (defs / "reviews_summary" / "defs.yaml").write_text(DEFS_YAML)

    shell.env["BEDROCK_ROLE_ARN"] = ROLE  # export BEDROCK_ROLE_ARN=arn:aws:iam::…:role/…
    checked = shell.dg("check", "defs")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert checked.stdout.splitlines()[-2:] == [
        "All component YAML validated successfully.",
        "All definitions loaded successfully.",
    ]
    return project, shell


@contextmanager
def local_stack(project: Path, shell: UserShell) -> Iterator[str]:
    """In another terminal: bedrock-assets local-stack --state-dir .local_stack (here on a free port, no waits)."""
    stack = subprocess.Popen(
        ["bedrock-assets", "local-stack", "--port", "0", "--state-dir", ".local_stack", "--time-scale", "0"],
        cwd=project,
        env={k: v for k, v in os.environ.items() if k not in shell.unset} | shell.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert stack.stdout is not None
        listening = stack.stdout.readline()
        port = re.search(r"listening on http://127\.0\.0\.1:(\d+)$", listening.strip())
        assert port, listening + (stack.stdout.read() if stack.poll() is not None else "")
        yield port[1]
    finally:
        stack.terminate()
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait()


@pytest.mark.subprocess
@pytest.mark.local_stack  # its own, as `bedrock-assets local-stack` in a subprocess
def test_the_readmes_own_project_path_runs_a_pipeline_on_the_local_stack(tmp_path):
    project, shell = make_project(tmp_path)
    with local_stack(project, shell) as port:
        exported = shell("bedrock-assets", "env", "--home", ".local_stack", "--stack-port", port)
        assert exported.returncode == 0, exported.stderr
        shell.eval_exports(exported.stdout)  # eval "$(bedrock-assets env --home .local_stack)"
        home = Path(shell.env["DAGSTER_HOME"])
        assert home == project.resolve() / ".local_stack" / "dagster" and (home / "dagster.yaml").is_file()
        assert shell.env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"

        uploaded = shell("python", "-c", UPLOAD)
        assert uploaded.returncode == 0, uploaded.stderr[-2000:]

        pipeline = "src/my_project/defs/reviews_summary"
        ran = shell("bedrock-assets", "run", pipeline, "--poll-seconds", "0.2", "--timeout", "90")
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        assert f"pipeline reviews_summary: {SOURCE_ROWS} rows -> {SOURCE_ROWS} succeeded, 0 failed" in ran.stdout
        assert "merged results: s3://my-bucket/bedrock/reviews-summary/merged_dataset/data.parquet" in ran.stdout
        assert list(home.glob("history/runs/*.db"))  # the runs are in the project's instance

        read = shell("python", "-c", READ_BACK.format(path=pipeline))
        assert read.returncode == 0, read.stderr[-2000:]
        assert read.stdout.split() == [str(SOURCE_ROWS)]  # every source row is in the merged dataset
