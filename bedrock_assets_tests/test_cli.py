"""`bedrock-assets run`: exit codes that tell success, finished-with-failures and could-not-finish apart."""

from __future__ import annotations

import uuid

import pytest
import yaml

from bedrock_assets.cli import EXIT_FAILED_ROWS, EXIT_NOT_FINISHED, EXIT_OK, main
from bedrock_assets.sample.seed import seed_sample
from bedrock_assets_tests.conftest import NO_RECOURSE, pipeline_dict


@pytest.fixture
def defs_folder(tmp_path, s3, bucket, monkeypatch):
    """Write a pipeline's defs.yaml over a 300-row sample (two shards); returns a writer."""
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=300)
    monkeypatch.setenv("BEDROCK_ASSETS_LEDGER_TABLE", f"ledger-{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    def write(name: str, **attributes) -> str:
        folder = tmp_path / name
        folder.mkdir()
        data = {
            "type": "bedrock_assets.components.BedrockBatchPipeline",
            "attributes": pipeline_dict(name, bucket, **attributes),
        }
        (folder / "defs.yaml").write_text(yaml.safe_dump(data))
        return str(folder)

    return write


def run_cli(*args: str) -> int:
    return main(["run", *args, "--poll-seconds", "0.05", "--timeout", "120"])


def test_exit_0_when_every_row_succeeded(defs_folder, capsys):
    assert run_cli(defs_folder("allgood")) == EXIT_OK
    assert "300 succeeded, 0 failed (within max_error_rate 0.0%)" in capsys.readouterr().out


def test_exit_1_when_a_failed_job_leaves_more_failed_rows_than_allowed(defs_folder, stack, capsys):
    stack.configure(fail_jobs_matching="halffail-s00001-")
    assert run_cli(defs_folder("halffail", retry=NO_RECOURSE)) == EXIT_FAILED_ROWS
    out = capsys.readouterr().out
    assert "FAILED: 33.3% of rows failed, max_error_rate 0.0%" in out and "'JobFailed': 100" in out


def test_exit_0_when_failures_stay_within_max_error_rate(defs_folder, stack):
    stack.configure(fail_jobs_matching="halfok-s00001-")
    assert run_cli(defs_folder("halfok", max_error_rate=0.4, retry=NO_RECOURSE)) == EXIT_OK


def test_exit_3_with_one_readable_line_when_the_spec_is_invalid(defs_folder, capsys):
    assert run_cli(defs_folder("badspec", timeout_hours=12)) == EXIT_NOT_FINISHED
    err = capsys.readouterr().err
    assert "attributes.timeout_hours: Input should be greater than or equal to 24" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_exit_3_names_the_cause_and_what_to_do_when_a_bucket_is_missing(defs_folder, capsys):
    path = defs_folder("nobucket", output_uri="s3://no-such-bucket-here/out")
    assert run_cli(path) == EXIT_NOT_FINISHED
    err = capsys.readouterr().err
    assert "NoSuchBucket" in err and "the bucket does not exist: check source.uri and output_uri" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_stop_stops_the_jobs_in_flight_and_a_rerun_merges_them_without_paying_again(defs_folder, stack, capsys):
    path = defs_folder("stopcli")
    stack.configure(time_scale=60)  # the jobs stay Submitted
    assert main(["run", path, "--poll-seconds", "0.05", "--timeout", "2"]) == EXIT_NOT_FINISHED
    capsys.readouterr()
    assert main(["stop", path]) == EXIT_OK
    assert "[stopcli] stopped 2 job(s), dequeued 0 shard(s)" in capsys.readouterr().out
    jobs_before = stack.emulator.job_count()
    stack.emulator.expedite()  # Stopping -> Stopped now, not after a 60 s phase
    assert run_cli(path) == EXIT_FAILED_ROWS  # every row ends JobStopped: failed, never resubmitted
    assert "'JobStopped': 300" in capsys.readouterr().out
    assert stack.emulator.job_count() == jobs_before
