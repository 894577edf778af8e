"""On-demand answers: each record's output line as a batch job writes it; throttling retried, 4xx answered as errors."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from bedrock_assets.bedrock.on_demand import MAX_TRIES, answer

LINE = json.dumps({"recordId": "r1", "modelInput": {"messages": []}}).encode()


def error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "X")


def test_an_answer_is_the_batch_output_line_of_the_record():
    got = answer(lambda body: {"content": [{"text": "hi"}]}, LINE, sleep=lambda s: None)
    assert got.ok and json.loads(got.line) == {
        "recordId": "r1",
        "modelInput": {"messages": []},
        "modelOutput": {"content": [{"text": "hi"}]},
    }


def test_throttling_is_retried_with_backoff_and_a_validation_error_is_answered_at_once():
    calls, waits = [], []

    def throttled_twice(body):
        calls.append(body)
        if len(calls) < 3:
            raise error("ThrottlingException", 429)
        return {"ok": True}

    assert answer(throttled_twice, LINE, sleep=waits.append, base_delay=1.0).ok
    assert len(calls) == 3 and len(waits) == 2 and 0.5 <= waits[0] <= 1.5 and 1.0 <= waits[1] <= 3.0

    def invalid(body):
        calls.append(body)
        raise error("ValidationException", 400)

    calls.clear()
    refused = answer(invalid, LINE, sleep=waits.append)
    assert not refused.ok and len(calls) == 1
    assert json.loads(refused.line)["error"] == {"errorCode": 400, "errorMessage": "ValidationException: no"}


def test_a_record_still_throttled_after_every_try_is_a_retriable_error_line():
    def always(body):
        raise error("ThrottlingException", 429)

    got = answer(always, LINE, sleep=lambda s: None)
    assert not got.ok and json.loads(got.line)["error"]["errorCode"] == 429 and MAX_TRIES == 5
