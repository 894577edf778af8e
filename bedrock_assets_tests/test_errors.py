"""Which errors pass, and what a user is told to do about the others."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from bedrock_assets.errors import hint, is_transient


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_outages_timeouts_and_throttling_are_transient_the_rest_is_not():
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert is_transient(client_error("ThrottlingException", 429)) and is_transient(client_error("Whatever", 503))
    assert not is_transient(client_error("ValidationException", 400))
    assert not is_transient(client_error("AccessDenied", 403)) and not is_transient(ValueError("bad"))


def test_a_stack_that_is_not_running_and_missing_credentials_say_what_to_do():
    assert "start the local stack" in hint("EndpointConnectionError", str(EndpointConnectionError(endpoint_url="x")))
    assert "set AWS_PROFILE" in hint("NoCredentialsError", str(NoCredentialsError()))
    assert "the bucket does not exist" in hint("ClientError", str(client_error("NoSuchBucket", 404)))
    assert hint("ValueError", "something else") is None
