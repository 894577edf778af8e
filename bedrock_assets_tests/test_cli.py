"""`bedrock-assets run`: exit codes that tell success, finished-with-failures and could-not-finish apart."""

from __future__ import annotations

import math
import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bedrock_assets.bedrock.prices import price_for, usd
from bedrock_assets.cli import EXIT_FAILED_ROWS, EXIT_NOT_FINISHED, EXIT_OK, main, run_defs
from bedrock_assets.graph.raw_dataset import prepare_dataset
from bedrock_assets.plan import worst_cost
from bedrock_assets.sample.seed import seed_sample
from bedrock_assets_tests.helpers import CLAUDE, NO_RECOURSE, foreign_job, one_spec, pipeline_dict, step_of


@pytest.fixture
def defs_folder(tmp_path, s3, bucket, monkeypatch):
    """Write a pipeline's defs.yaml over a 300-row sample (two shards); returns a writer."""
    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=300)
    monkeypatch.setenv("BEDROCK_ASSETS_LEDGER_TABLE", f"ledger-{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    def write(name: str, replace: bool = False, **attributes) -> str:
        folder = tmp_path / name
        folder.mkdir(exist_ok=replace)
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
    assert "300 succeeded, 0 failed; within max_error_rate 0.0%" in capsys.readouterr().out


def test_exit_1_when_a_failed_job_leaves_more_failed_rows_than_allowed(defs_folder, stack, capsys):
    stack.configure(fail_jobs_matching="halffail-s00001-")
    assert run_cli(defs_folder("halffail", retry=NO_RECOURSE)) == EXIT_FAILED_ROWS
    out = capsys.readouterr().out
    assert "FAILED: 33.3% of rows failed, max_error_rate 0.0%" in out and "failed (100 JobFailed)" in out


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
    assert "failed (300 JobStopped)" in capsys.readouterr().out
    assert stack.emulator.job_count() == jobs_before


def test_plan_equals_a_hand_computation_and_writes_nothing(defs_folder, s3, bucket, tmp_path, capsys):
    path = defs_folder("planned", inference={"max_tokens": 100})
    assert main(["plan", path]) == EXIT_OK
    out = capsys.readouterr().out

    source = tmp_path / "source.parquet"
    s3.download_file(bucket, "raw/sample.parquet", str(source))
    rows = pq.read_table(source).to_pylist()
    chars = sum(len(f"Task: {r['task']}\n\n{r['source']}") + len("Answer briefly.") for r in rows)
    input_tokens, worst_output = math.ceil(chars / 4), 300 * 100
    assert "300 rows (0 rejected before submission) -> 300 records in 2 shards = 2 batch jobs" in out
    jsonl_bytes = int(out.split(" bytes of JSONL")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert jsonl_bytes > chars  # the bound on input tokens: the JSONL bytes
    assert f"input tokens ~{input_tokens:,} expected (prompt characters / 4), {jsonl_bytes:,} at most" in out
    assert f"output tokens ~{worst_output // 4:,} expected (25% of max_tokens 100), {worst_output:,} at most" in out
    price = price_for(CLAUDE)
    expected = (input_tokens * price.batch.input + worst_output // 4 * price.batch.output) / 1000
    worst = (jsonl_bytes * price.batch.input + worst_output * price.batch.output) / 1000
    assert f"cost at the batch price: {usd(expected)} expected, {usd(worst)} at most" in out
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="out/")  # nothing written


def test_plan_says_cost_unknown_for_a_model_without_a_price(defs_folder, capsys):
    path = defs_folder("unpriced", model="mistral.mistral-large-2407-v1:0")  # a batch model without a price here
    assert main(["plan", path]) == EXIT_OK
    assert "cost unknown: no price for mistral.mistral-large-2407-v1:0" in capsys.readouterr().out


def test_a_budget_smaller_than_the_second_shards_estimate_holds_it_until_it_is_raised(
    defs_folder, s3, bucket, tmp_path, stack, capsys
):
    rows = pa.table(
        {
            "task": ["t"] * 300,
            "source": ["short"] * 150 + ["a much longer text " * 200] * 150,  # the second shard costs more
        }
    )
    pq.write_table(rows, tmp_path / "rows.parquet")
    s3.upload_file(str(tmp_path / "rows.parquet"), bucket, "raw/sample.parquet")
    attributes = {"shards": {"max_records": 150}, "retry": NO_RECOURSE}
    spec = one_spec(pipeline_dict("budgeted", bucket, **attributes))
    shards = prepare_dataset(step_of(spec), write_parts=False).shards
    first, second = (worst_cost(s, spec.adapter(), price_for(CLAUDE)) for s in shards)
    assert first < second
    path = defs_folder("budgeted", budget_usd=round((first + second) / 2, 6), **attributes)
    assert run_cli(path) == EXIT_NOT_FINISHED
    err = capsys.readouterr().err
    assert f"budgeted: budget_usd {usd((first + second) / 2)}:" in err and "spent" in err and "committed" in err
    assert f"this shard needs up to {usd(second)}: raise budget_usd" in err and "(1 shard(s) wait)" in err
    jobs = stack.emulator.job_count()
    raised = defs_folder("budgeted", budget_usd=round(first + second, 6), replace=True, **attributes)
    assert run_cli(raised) == EXIT_OK
    assert stack.emulator.job_count() == jobs + 1  # the held shard, and nothing paid twice


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """A DAGSTER_HOME that outlives a process: the instance a killed run and its rerun share."""
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def run_in_a_process(path: str, stop_when, signal_number: int = 9, limit: float = 90.0) -> tuple[int, str]:
    """``bedrock-assets run`` in its own process, sent ``signal_number`` (default SIGKILL) as soon as
    ``stop_when()`` holds; its exit code and stderr."""
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "bedrock_assets.cli", "run", path, "--poll-seconds", "0.05", "--timeout", "120"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + limit
    try:
        while not stop_when():
            assert child.poll() is None, "the run ended before the point it was to be stopped at"
            assert time.monotonic() < deadline, "the point to stop it at never came"
            time.sleep(0.05)
        child.send_signal(signal_number)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    return child.returncode, err


@pytest.mark.subprocess
def test_a_run_killed_while_its_create_is_in_flight_is_finished_by_the_next_run_with_each_job_once(
    defs_folder, stack, dagster_home, capsys
):
    from bedrock_assets.bedrock.job_status import JobStatus
    from bedrock_assets.ledger import JobLedgerResource

    path = defs_folder("killcreate")
    jobs_before = stack.emulator.job_count()
    stack.configure(create_delay=30)  # the first create takes effect, then its answer is 30 s away
    run_in_a_process(path, lambda: stack.emulator.job_count() > jobs_before)
    stack.configure(create_delay=0)
    ledger = JobLedgerResource(table_name=os.environ["BEDROCK_ASSETS_LEDGER_TABLE"]).get_ledger()
    assert ledger.latest("killcreate", "s00000").status is JobStatus.SUBMITTING  # the claim the kill left

    assert run_cli(path) == EXIT_OK
    out = capsys.readouterr().out
    assert "300 succeeded, 0 failed" in out and "marked failed" in out  # the killed run no longer holds its shards
    assert stack.emulator.job_count() - jobs_before == 2  # one job per shard: the first was attached, not re-created


@pytest.mark.subprocess
def test_sigterm_stops_a_run_between_stage_runs_says_what_runs_in_bedrock_and_the_rerun_finishes(
    defs_folder, stack, dagster_home, capsys
):
    import signal

    path = defs_folder("sigterm")
    jobs_before = stack.emulator.job_count()
    stack.configure(create_delay=1, time_scale=3600)  # each create answers after 1 s; the jobs stay in flight
    # SIGTERM during the submit run: it ends at the next safe point
    code, err = run_in_a_process(path, lambda: stack.emulator.job_count() > jobs_before, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert "stopped by SIGTERM between two stage runs; still running in Bedrock: sigterm s00000 (" in err
    assert "Traceback" not in err and "run the same command again" in err

    stack.configure(create_delay=0)
    stack.emulator.expedite()
    stack.configure(time_scale=0)
    assert run_cli(path) == EXIT_OK
    assert "300 succeeded, 0 failed" in capsys.readouterr().out
    assert stack.emulator.job_count() - jobs_before == 2


def test_what_the_jobs_cost_stays_within_the_planned_worst_case_for_short_records(
    defs_folder, s3, bucket, tmp_path, capsys
):
    from bedrock_assets_tests.helpers import TITAN

    # 3,000 two-character records: characters / 4 said 1,500 input tokens, the service counted 3,000
    pq.write_table(pa.table({"source": ["ab"] * 3000, "task": ["t"] * 3000}), tmp_path / "rows.parquet")
    s3.upload_file(str(tmp_path / "rows.parquet"), bucket, "raw/sample.parquet")
    attributes = {"model": TITAN, "shards": {"max_records": 1000}}
    spec = one_spec(pipeline_dict("tiny", bucket, **attributes))
    shards = prepare_dataset(step_of(spec), write_parts=False).shards
    worst = sum(worst_cost(s, spec.adapter(), price_for(TITAN)) for s in shards)
    path = defs_folder("tiny", budget_usd=round(worst, 8) + 1e-8, **attributes)
    (summary,) = run_defs(Path(path), None, 0.05, 120)
    assert summary.succeeded == 3000 and summary.input_tokens >= 3000  # at least a token a record
    assert 0 < summary.cost <= worst == pytest.approx(summary.planned_worst)
    assert "OVER budget_usd" not in "\n".join(summary.lines())


def test_version_and_a_missing_local_stack_extra_get_one_line_each(capsys, monkeypatch):
    import builtins

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("bedrock-assets 0.")

    real_import = builtins.__import__

    def without_werkzeug(name, *args, **kwargs):
        if name.startswith("bedrock_assets.local_stack") or name == "werkzeug":
            raise ModuleNotFoundError("No module named 'werkzeug'", name="werkzeug")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_werkzeug)
    assert main(["env"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: `bedrock-assets env` runs the embedded local stack, which needs the local-stack extra (werkzeug is "
        "not installed): pip install 'bedrock_assets[local-stack]'"
    ]


def test_every_flag_with_a_value_shows_its_default_in_help():
    import argparse

    from bedrock_assets.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    checked = 0
    for name, command in commands.choices.items():
        for action in command._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                shown = command._get_formatter()._expand_help(action)  # the text --help prints beside the flag
                assert "default" in shown, f"{name} {action.option_strings[-1]}: {shown!r}"
                checked += 1
    assert checked >= 15


def test_dev_takes_the_emulated_error_rate_like_demo():
    from bedrock_assets.cli import build_parser

    assert build_parser().parse_args(["dev", "--error-rate", "0.05"]).error_rate == 0.05
    assert build_parser().parse_args(["dev"]).error_rate == build_parser().parse_args(["demo"]).error_rate == 0.01


def test_a_stop_says_new_work_is_held_and_resume_lets_the_pipeline_go_on(defs_folder, s3, bucket, capsys):
    path = defs_folder("resumable")
    assert run_cli(path) == EXIT_OK
    capsys.readouterr()
    assert main(["stop", path]) == EXIT_OK  # on a finished pipeline: nothing to stop, but new work is held
    out = capsys.readouterr().out
    assert "[resumable] stopped 0 job(s)" in out and "new work is held" in out
    assert f"To go on later: bedrock-assets resume {path}" in out

    seed_sample(s3, f"s3://{bucket}/raw/sample.parquet", rows=450)  # new rows: a new shard
    assert run_cli(path) == EXIT_FAILED_ROWS
    assert "JobStopped" in capsys.readouterr().out  # the new shard was not submitted: the pipeline is stopped

    assert main(["resume", path]) == EXIT_OK
    out = capsys.readouterr().out
    assert "[resumable] resumed (stopped at " in out and "shard(s) queued again" in out
    assert run_cli(path) == EXIT_OK
    assert "450 succeeded, 0 failed" in capsys.readouterr().out


CODE_LOCATION = """
from pathlib import Path

import dagster as dg

from bedrock_assets.components.bedrock_batch_pipeline import build_pipeline_defs
from bedrock_assets.components.loading import load_pipelines
from bedrock_assets.resources import bedrock_resources

specs = load_pipelines(Path({path!r}))
defs = dg.Definitions.merge(*(build_pipeline_defs(s) for s in specs), dg.Definitions(resources=bedrock_resources()))
"""

PARTITIONS = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } }
    }
  }
}
"""

RUNS = "{ runsOrError { ... on Runs { results { jobName status } } } }"


@pytest.mark.subprocess
def test_a_failed_job_is_red_where_dagster_users_look(defs_folder, stack, dagster_home, tmp_path, capsys):
    from dagster import DagsterInstance
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    stack.configure(fail_jobs_matching="redjob-s00001-")
    path = defs_folder("redjob", retry=NO_RECOURSE)
    assert run_cli(path) == EXIT_FAILED_ROWS  # the headless run goes on to the end, as before
    assert " JobFailed)" in capsys.readouterr().out
    code = tmp_path / "code_location.py"
    code.write_text(CODE_LOCATION.format(path=path))
    with DagsterInstance.get() as instance, define_out_of_process_context(str(code), "defs", instance) as context:
        statuses = {}
        for node in ("batch_job_outputs", "merged_results"):
            result = execute_dagster_graphql(context, PARTITIONS, {"key": {"path": ["redjob", node]}})
            statuses[node] = result.data["assetNodeOrError"]["assetPartitionStatuses"]
        runs = execute_dagster_graphql(context, RUNS).data["runsOrError"]["results"]
    # the shard whose job failed is Failed in the partition views; the other is materialized
    assert statuses["merged_results"] == {"materializedPartitions": ["s00000"], "failedPartitions": ["s00001"]}
    failed = sorted({r["jobName"] for r in runs if r["status"] == "FAILURE"})
    assert failed == ["redjob__merge", "redjob__publish"]  # the merge of that shard, and the dataset over the limit
    assert {r["status"] for r in runs if r["jobName"] == "redjob__submit"} == {"SUCCESS"}


def test_show_prints_one_records_outcome_and_lineage(defs_folder, capsys):
    path = defs_folder("shown")
    assert run_cli(path) == EXIT_OK
    capsys.readouterr()
    assert main(["show", path, "r00000000007"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["[shown]", "record r00000000007: succeeded"]
    assert lines[2].endswith(" row 7; first-pass shard s00000") and "sample.parquet" in lines[2]
    assert lines[3].startswith("  final outcome from arn:aws:bedrock:") and lines[3].endswith("(first pass)")
    assert "  stop_reason: end_turn" in lines
    assert main(["show", path, "no-such-id"]) == EXIT_NOT_FINISHED
    assert "no record 'no-such-id' in the merged dataset of ['shown']" in capsys.readouterr().err


def test_status_prints_where_a_pipeline_stands_from_the_ledger_and_bedrock(defs_folder, stack, capsys):
    # a model no other test uses: its batch metrics (account-wide) are this test's alone
    model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    path = defs_folder("standing", model=model, stall_after="1s", deadline={"at": "2030-01-01T00:00:00Z"})
    stack.configure(time_scale=0.2, hold_jobs_matching="standing-s00001-", metrics_seconds=0)
    assert (
        main(["run", path, "--poll-seconds", "0.05", "--timeout", "12"]) == EXIT_NOT_FINISHED
    )  # s00000 done even under load
    capsys.readouterr()
    assert main(["status", path]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[standing] ") and "(from the ledger)" not in out[0]
    assert out[1] == "  jobs: 1 Completed, 1 Scheduled"
    assert out[2].startswith("  records processed 200/300 (67%); 0 records/min, ETA ")
    assert re.fullmatch(r"  model backlog \(account-wide\): [\d,]+ records pending, [\d,]+ input tokens/min", out[3])
    # the cutoff: the margin and the 100 unanswered records at the assumed 4 x 12 records/min before the deadline
    assert out[4].startswith("  deadline 2030-01-01 00:00:00Z (") and out[4].endswith(
        " left); batch cutoff 2029-12-31 23:42:55Z (48 records/min on demand (assumed), margin 15m00s)"
    )
    # Scheduled longer than stall_after, but the model's batch queue moved (s00000's tokens): not stalled
    assert not any("STALLED" in line for line in out) and not out[3].endswith(" 0 input tokens/min")
    header = out.index(f"  {'shard':<10} {'status':<18} {'age':>12} {'processed':>19} job")
    rows = out[header + 1 :]
    assert rows[0].split()[:2] == ["s00001", "Scheduled"] and rows[0].split()[3] == "0/100"
    assert rows[1].split()[:2] == ["s00000", "Completed"] and rows[1].split()[2] == "took"
    assert main(["status", path, "--ledger-only"]) == EXIT_OK  # no Bedrock call: what the ledger holds
    assert "(from the ledger)" in capsys.readouterr().out.splitlines()[0]


def test_status_shows_an_orphan_and_stop_orphans_stops_it_and_nothing_else(defs_folder, stack, bucket, capsys):
    path = defs_folder("strays")
    assert run_cli(path) == EXIT_OK
    stack.configure(time_scale=60)
    arn = foreign_job(bucket, "strays-s00009-0123456789")  # e.g. left by an older version of the spec
    capsys.readouterr()
    assert main(["status", path]) == EXIT_OK
    (orphan,) = [line for line in capsys.readouterr().out.splitlines() if "ORPHAN" in line]
    assert orphan.startswith(f"  ORPHAN strays-s00009-0123456789 ({arn}): Submitted") and "stop --orphans" in orphan
    calls = dict(stack.emulator.control_plane_calls())
    assert main(["stop", path, "--orphans"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("[strays] stopped 1 orphan job(s)\n  ORPHAN strays-s00009-0123456789")
    after = stack.emulator.control_plane_calls()
    assert after["StopModelInvocationJob"] - calls.get("StopModelInvocationJob", 0) == 1  # only the orphan
    assert stack.client("bedrock").get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping"


def test_a_canary_record_the_model_rejects_stops_the_pipeline_before_any_job(defs_folder, stack, s3, bucket, capsys):
    path = defs_folder("canaried", canary={"records": 3})
    local = Path(path) / "sample.parquet"
    s3.download_file(bucket, "raw/sample.parquet", str(local))
    rows = pq.read_table(local)
    sources = rows.column("source").to_pylist()
    sources[1] = "word " * 200_000  # ~250,000 tokens: over the model's 200,000-token context window
    pq.write_table(rows.set_column(rows.schema.get_field_index("source"), "source", pa.array(sources)), local)
    s3.upload_file(str(local), bucket, "raw/sample.parquet")
    jobs_before, calls_before = stack.emulator.job_count(), stack.emulator.runtime_calls()["InvokeModel"]
    assert run_cli(path) == EXIT_NOT_FINISHED
    err = capsys.readouterr().err
    assert "canaried__batch_jobs: canaried: the canary's record r00000000001 failed on demand: 400: " in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]  # one line, without Dagster's class path
    assert "Failure:" not in line and "r00000000001" in line
    assert "No batch job was created" in err and "canary: {records: 0} skips the canary" in err
    assert stack.emulator.job_count() == jobs_before  # nothing was submitted: no hours lost in a queue
    assert stack.emulator.runtime_calls()["InvokeModel"] - calls_before == 3  # the canary's records, once each
