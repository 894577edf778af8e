"""The batch job emulator: the job API, its state machine, outputs, quotas, faults and stops."""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from bedrock_assets.local_stack import BatchJobEmulator, FaultConfig, LocalStack, jobs
from bedrock_assets_tests.local_stack.helpers import (
    CLAUDE,
    ROLE,
    TERMINAL,
    FakeClock,
    claude_records,
    create_job,
    error_ids,
    job_id,
    make_client,
    put_jsonl,
    read_out,
    uid,
    wait_terminal,
)


def test_create_get_list_stop_round_trip(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(120))
    stack.configure(time_scale=0.3)
    name = uid("roundtrip")
    arn = create_job(bedrock, bucket, jobName=name, tags=[{"key": "team", "value": "ml"}], timeoutDurationInHours=72)
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/")
    assert len(job_id(arn)) == 12 and job_id(arn).isalnum() and job_id(arn).islower()
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Submitted" and job["jobName"] == name and job["modelId"] == CLAUDE
    assert job["timeoutDurationInHours"] == 72 and job["totalRecordCount"] == 0
    assert bedrock.get_model_invocation_job(jobIdentifier=job_id(arn))["jobArn"] == arn
    listed = bedrock.list_model_invocation_jobs(nameContains=name)["invocationJobSummaries"]
    assert [j["jobArn"] for j in listed] == [arn]
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping"
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "Stopped" and "endTime" in job
    assert job["processedRecordCount"] == 0  # stopped before InProgress: no output at all
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=f"out/{job_id(arn)}/")
    with pytest.raises(ClientError) as err:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_filters_sorting_and_pagination(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    tag = uuid.uuid4().hex[:8]
    arns = [create_job(bedrock, bucket, jobName=f"list-{tag}-{i}") for i in range(3)]
    for arn in arns:
        wait_terminal(bedrock, arn)
    page = bedrock.list_model_invocation_jobs(nameContains=tag, maxResults=2, sortOrder="Ascending")
    assert [j["jobArn"] for j in page["invocationJobSummaries"]] == arns[:2]
    rest = bedrock.list_model_invocation_jobs(
        nameContains=tag, maxResults=2, sortOrder="Ascending", nextToken=page["nextToken"]
    )
    assert [j["jobArn"] for j in rest["invocationJobSummaries"]] == arns[2:] and "nextToken" not in rest
    desc = bedrock.list_model_invocation_jobs(nameContains=tag)["invocationJobSummaries"]
    assert [j["jobArn"] for j in desc] == arns[::-1]
    assert all(j["status"] == "Completed" for j in desc)
    assert bedrock.list_model_invocation_jobs(nameContains=tag, statusEquals="Failed")["invocationJobSummaries"] == []
    first = bedrock.get_model_invocation_job(jobIdentifier=arns[0])["submitTime"]
    later = bedrock.list_model_invocation_jobs(nameContains=tag, submitTimeAfter=first)["invocationJobSummaries"]
    assert {j["jobArn"] for j in later} == set(arns)


def test_status_progression(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    stack.configure(time_scale=0.25)
    arn = create_job(bedrock, bucket)
    seen: list[str] = []
    deadline = time.time() + 10
    while time.time() < deadline:
        status = bedrock.get_model_invocation_job(jobIdentifier=arn)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in TERMINAL:
            break
        time.sleep(0.04)
    order = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    assert seen[0] == "Submitted" and seen[-1] == "Completed"
    assert len(seen) >= 3 and seen == sorted(seen, key=order.index)


def test_time_scale_zero_is_terminal_on_first_observation(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    arn = create_job(bedrock, bucket)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Completed" and job["processedRecordCount"] == 100


def test_output_layout_and_content(s3: Any, bedrock: Any, bucket: str) -> None:
    recs_a, recs_b = claude_records(150, "a"), claude_records(100, "b")
    put_jsonl(s3, bucket, "in/part-a.jsonl", recs_a)
    put_jsonl(s3, bucket, "in/part-b.jsonl", recs_b)
    s3.put_object(Bucket=bucket, Key="in/README.txt", Body=b"not an input")
    arn = create_job(bedrock, bucket, input_key="in")
    job = wait_terminal(bedrock, arn)
    assert job["status"] == "Completed", job.get("message")
    jid = job_id(arn)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"])
    assert keys == [f"out/{jid}/manifest.json.out", f"out/{jid}/part-a.jsonl.out", f"out/{jid}/part-b.jsonl.out"]
    for name, recs in (("part-a.jsonl", recs_a), ("part-b.jsonl", recs_b)):
        out = read_out(s3, bucket, f"out/{jid}/{name}.out")
        ids = [o["recordId"] for o in out]
        assert sorted(ids) == [r["recordId"] for r in recs] and ids != [r["recordId"] for r in recs]
        by_id = {r["recordId"]: r for r in recs}
        for o in out:
            assert o["modelInput"] == by_id[o["recordId"]]["modelInput"]
            mo = o["modelOutput"]
            assert mo["type"] == "message" and mo["role"] == "assistant" and mo["model"] == CLAUDE
            assert mo["id"].startswith("msg_emulated_") and mo["content"][0]["text"].startswith("[emulated]")
            assert mo["stop_reason"] == "end_turn" and mo["usage"]["input_tokens"] > 0
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"out/{jid}/manifest.json.out")["Body"].read())
    assert manifest["totalRecordCount"] == manifest["processedRecordCount"] == manifest["successRecordCount"] == 250
    assert manifest["errorRecordCount"] == 0 and manifest["inputTokenCount"] > 0 and manifest["outputTokenCount"] > 0
    assert (
        job["totalRecordCount"],
        job["processedRecordCount"],
        job["successRecordCount"],
        job["errorRecordCount"],
    ) == (250, 250, 250, 0)


def test_too_few_records_fails_job(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(5))
    job = wait_terminal(bedrock, create_job(bedrock, bucket))
    assert job["status"] == "Failed" and "minimum" in job["message"] and "100" in job["message"]


def test_min_records_knob(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(min_records=1)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(5))
    assert wait_terminal(bedrock, create_job(bedrock, bucket))["status"] == "Completed"


def test_malformed_line_fails_job(s3: Any, bedrock: Any, bucket: str) -> None:
    body = "\n".join(json.dumps(r) for r in claude_records(100)) + "\n{not json\n"
    s3.put_object(Bucket=bucket, Key="in/data.jsonl", Body=body.encode())
    job = wait_terminal(bedrock, create_job(bedrock, bucket))
    assert job["status"] == "Failed" and "not valid JSON" in job["message"]


def test_idempotent_create_and_name_conflict(s3: Any, bedrock: Any, bucket: str) -> None:
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    name, token = uid("idem"), uuid.uuid4().hex
    arn1 = create_job(bedrock, bucket, jobName=name, clientRequestToken=token)
    arn2 = create_job(bedrock, bucket, jobName=name, clientRequestToken=token)
    assert arn1 == arn2
    assert len(bedrock.list_model_invocation_jobs(nameContains=name)["invocationJobSummaries"]) == 1
    with pytest.raises(ClientError) as err:
        create_job(bedrock, bucket, jobName=name, clientRequestToken=uuid.uuid4().hex)
    assert err.value.response["Error"]["Code"] == "ConflictException"


def test_concurrency_quota(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    model = "anthropic.claude-3-opus-20240229-v1:0"
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    stack.configure(time_scale=0.3, concurrency_limits={model: 2})
    try:
        first = create_job(bedrock, bucket, model=model)
        create_job(bedrock, bucket, model=model)
        with pytest.raises(ClientError) as err:
            create_job(bedrock, bucket, model=model)
        assert err.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
        create_job(bedrock, bucket, model=CLAUDE)  # other models are not affected
        assert wait_terminal(bedrock, first)["status"] == "Completed"
        create_job(bedrock, bucket, model=model)
    finally:
        stack.configure(concurrency_limits={model: None})


def test_record_error_rate(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(record_error_rate=0.3)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    arn = create_job(bedrock, bucket)
    job = wait_terminal(bedrock, arn)
    out = read_out(s3, bucket, f"out/{job_id(arn)}/data.jsonl.out")
    errors = [o for o in out if "error" in o]
    assert job["status"] == "PartiallyCompleted" and 20 < len(errors) < 120
    assert job["errorRecordCount"] == len(errors) and job["successRecordCount"] == 200 - len(errors)
    assert {e["error"]["errorCode"] for e in errors} <= {429, 500} and len(out) == 200


def test_drop_rate(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(drop_rate=0.25)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    arn = create_job(bedrock, bucket)
    job = wait_terminal(bedrock, arn)
    out = read_out(s3, bucket, f"out/{job_id(arn)}/data.jsonl.out")
    assert job["status"] == "PartiallyCompleted" and 10 < 200 - len(out) < 100
    assert job["totalRecordCount"] == 200 and job["processedRecordCount"] == len(out) == job["successRecordCount"]
    assert len({o["recordId"] for o in out}) == len(out)


def test_record_faults_are_drawn_per_job(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(record_error_rate=0.5, min_records=1)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    first, second = uid("draw"), uid("draw")
    arn1 = create_job(bedrock, bucket, jobName=first)
    arn2 = create_job(bedrock, bucket, jobName=second)
    assert wait_terminal(bedrock, arn1)["status"] == wait_terminal(bedrock, arn2)["status"] == "PartiallyCompleted"
    failed1, failed2 = error_ids(s3, bucket, arn1), error_ids(s3, bucket, arn2)
    assert 50 < len(failed1) < 150 and 50 < len(failed2) < 150 and failed1 != failed2
    # a retry job of just the failed records: each gets a fresh draw, so about half succeed now
    retry = [r for r in claude_records(200) if r["recordId"] in failed1]
    put_jsonl(s3, bucket, "retry/data.jsonl", retry)
    arn3 = create_job(bedrock, bucket, input_key="retry/data.jsonl")
    job = wait_terminal(bedrock, arn3)
    assert 0 < job["errorRecordCount"] < len(retry) and job["successRecordCount"] > 0
    # reproducible: the same job name on a fresh emulator draws the same records
    with LocalStack(port=0, time_scale=0, faults=FaultConfig(record_error_rate=0.5, min_records=1)) as other:
        other_bedrock = make_client(other, "bedrock")
        again = create_job(other_bedrock, bucket, jobName=first)
        assert wait_terminal(other_bedrock, again)["status"] == "PartiallyCompleted"
        assert error_ids(s3, bucket, again) == failed1


def test_drop_rate_is_drawn_per_job(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(drop_rate=0.5)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    arns = [create_job(bedrock, bucket) for _ in range(2)]
    assert all(wait_terminal(bedrock, a)["status"] == "PartiallyCompleted" for a in arns)
    kept = [{o["recordId"] for o in read_out(s3, bucket, f"out/{job_id(a)}/data.jsonl.out")} for a in arns]
    assert kept[0] != kept[1] and all(50 < len(k) < 150 for k in kept)


def test_job_stopped_in_progress_writes_partial_output(stack: LocalStack, s3: Any, bucket: str) -> None:
    clock = FakeClock()
    emulator = BatchJobEmulator(stack.client("s3"), time_scale=10, clock=clock)
    recs_a, recs_b = claude_records(150, "a"), claude_records(101, "b")
    put_jsonl(s3, bucket, "in/part-a.jsonl", recs_a)
    put_jsonl(s3, bucket, "in/part-b.jsonl", recs_b)
    body = {
        "jobName": uid("salvage"),
        "roleArn": ROLE,
        "modelId": CLAUDE,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    }
    arn = emulator.create(body)["jobArn"]
    clock.now += 30  # Submitted -> Validating -> Scheduled -> InProgress
    assert emulator.get(arn)["status"] == "InProgress"
    assert emulator.get(arn)["processedRecordCount"] == 0  # just started
    clock.now += 5  # half of its InProgress phase: progress grows with the time InProgress
    assert emulator.get(arn)["processedRecordCount"] == 125
    emulator.stop(arn)
    assert emulator.get(arn)["status"] == "Stopping"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=f"out/{job_id(arn)}/")  # nothing before Stopped
    clock.now += 10
    job = emulator.get(arn)
    assert job["status"] == "Stopped" and job["message"] == "Stop requested by user."
    # what it had processed at the stop, file by file: 74 of 150 and 50 of 101 (125/251 of each)
    assert (job["totalRecordCount"], job["processedRecordCount"], job["successRecordCount"]) == (251, 124, 124)
    jid = job_id(arn)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"out/{jid}/manifest.json.out")["Body"].read())
    assert manifest["totalRecordCount"] == 251 and manifest["processedRecordCount"] == 124
    for name, recs in (("part-a.jsonl", recs_a), ("part-b.jsonl", recs_b)):
        out = read_out(s3, bucket, f"out/{jid}/{name}.out")
        ids = [o["recordId"] for o in out]
        assert len(ids) == len(set(ids)) == int(len(recs) * 125 / 251)
        assert set(ids) < {r["recordId"] for r in recs} and all("modelOutput" in o for o in out)


def test_job_stopped_before_in_progress_writes_nothing(stack: LocalStack, s3: Any, bucket: str) -> None:
    clock = FakeClock()
    emulator = BatchJobEmulator(stack.client("s3"), time_scale=10, clock=clock)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    body = {
        "jobName": uid("early"),
        "roleArn": ROLE,
        "modelId": CLAUDE,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    }
    arn = emulator.create(body)["jobArn"]
    clock.now += 25  # Scheduled
    assert emulator.get(arn)["status"] == "Scheduled"
    emulator.stop(arn)
    clock.now += 100
    job = emulator.get(arn)
    assert job["status"] == "Stopped" and job["processedRecordCount"] == 0 and job["totalRecordCount"] == 100
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="out/")


def test_fail_and_expire_faults(stack: LocalStack, s3: Any, bedrock: Any, bucket: str) -> None:
    stack.configure(fail_jobs_matching="boom", expire_jobs_matching="late")
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(100))
    failed = wait_terminal(bedrock, create_job(bedrock, bucket, jobName=uid("boom")))
    assert failed["status"] == "Failed" and failed["message"]
    expired = wait_terminal(bedrock, create_job(bedrock, bucket, jobName=uid("late")))
    assert expired["status"] == "Expired" and expired["processedRecordCount"] == 0
    assert wait_terminal(bedrock, create_job(bedrock, bucket))["status"] == "Completed"


def test_throttling(stack: LocalStack, bedrock: Any) -> None:
    stack.configure(throttle_every=2)
    no_retry = make_client(stack, "bedrock", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    no_retry.list_model_invocation_jobs(maxResults=1)
    with pytest.raises(ClientError) as err:
        no_retry.list_model_invocation_jobs(maxResults=1)
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    for _ in range(3):  # the default client retries throttling transparently
        bedrock.list_model_invocation_jobs(maxResults=1)


def test_an_outage_of_some_seconds_begins_at_the_next_call(stack: LocalStack) -> None:
    no_retry = make_client(stack, "bedrock", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    stack.configure(outage_seconds=60)
    time.sleep(0.2)  # not yet begun: the clock starts at the next call, however late it comes
    with pytest.raises(ClientError) as err:
        no_retry.list_model_invocation_jobs(maxResults=1)
    assert err.value.response["Error"]["Code"] == "ServiceUnavailableException"
    knobs = stack.configure()
    assert knobs["outage_seconds"] == 0 and knobs["unavailable_until"] > time.time() + 50
    with pytest.raises(ClientError):  # still down at the call after
        no_retry.list_model_invocation_jobs(maxResults=1)
    stack.configure(unavailable_until=0)
    no_retry.list_model_invocation_jobs(maxResults=1)


class OneObjectS3:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_object(self, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(self.data)}


def test_input_lines_split_as_splitlines_across_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "READ_BYTES", 3)
    data = b"ab\r\ncd\re\n\n  \nfgh\r\n\r\n\tij\r\n\rk"
    lines = list(BatchJobEmulator(OneObjectS3(data))._iter_lines("b", "k"))
    assert lines == [line for line in data.splitlines() if line.strip()] == [b"ab", b"cd", b"e", b"fgh", b"\tij", b"k"]


def test_validation_names_the_first_bad_line(s3: Any, bedrock: Any, bucket: str) -> None:
    good = [json.dumps(r, separators=(",", ":")) for r in claude_records(3000)]  # bulk-shaped
    body = "\r\n".join(good[:2500] + ["", '{"recordId":"x"}', "{not json"] + good[2500:])
    s3.put_object(Bucket=bucket, Key="in/data.jsonl", Body=body.encode())
    job = wait_terminal(bedrock, create_job(bedrock, bucket))
    assert job["status"] == "Failed" and job["message"].startswith("Line 2501 of ")
    assert job["message"].endswith("is missing the required 'modelInput' field.")


def _job_body(bucket: str, name: str) -> dict:
    return {
        "jobName": uid(name),
        "roleArn": ROLE,
        "modelId": CLAUDE,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/data.jsonl"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    }


def test_held_stalled_and_slow_jobs(stack: LocalStack, s3: Any, bucket: str) -> None:
    clock = FakeClock()
    faults = FaultConfig(hold_jobs_matching="held", stall_jobs_matching="stall", slow_jobs_matching="slow")
    faults.slow_factor = 4.0
    emulator = BatchJobEmulator(stack.client("s3"), time_scale=10, clock=clock, faults=faults)
    put_jsonl(s3, bucket, "in/data.jsonl", claude_records(200))
    held, stalled, slow, plain = (
        emulator.create(_job_body(bucket, n))["jobArn"] for n in ("held", "stall", "slow", "plain")
    )
    clock.now += 35  # every job is InProgress for 5 s, but the held one, which stays Scheduled
    jobs_now = {arn: emulator.get(arn) for arn in (held, stalled, slow, plain)}
    assert jobs_now[held]["status"] == "Scheduled"
    assert {jobs_now[a]["status"] for a in (stalled, slow, plain)} == {"InProgress"}
    assert jobs_now[plain]["processedRecordCount"] == 100  # half its 10 s phase
    assert jobs_now[slow]["processedRecordCount"] == 25  # a quarter of the rate
    assert jobs_now[stalled]["processedRecordCount"] == 0
    clock.now += 3600
    assert emulator.get(held)["status"] == "Scheduled"
    assert emulator.get(stalled)["status"] == "InProgress" and emulator.get(stalled)["processedRecordCount"] == 0
    assert emulator.get(slow)["status"] == emulator.get(plain)["status"] == "Completed"
    for arn in (held, stalled):  # a stop is the way out
        emulator.stop(arn)
    clock.now += 10
    assert emulator.get(held)["status"] == emulator.get(stalled)["status"] == "Stopped"
    assert emulator.get(stalled)["processedRecordCount"] == 0
