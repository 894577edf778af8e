"""WSGI app of the local stack: moto (S3, DynamoDB, ...) plus the Bedrock emulators.

Requests are told apart by the service name in their SigV4 credential scope. Both ``bedrock`` and
``bedrock-runtime`` clients sign as ``bedrock``; among those, paths starting with
``/model-invocation-job`` go to the batch-job emulator and ``/model/{modelId}/invoke`` |
``/model/{modelId}/converse`` to the runtime emulator. ``/_emulator/...`` is the control API
(``GET health`` with the runtime call counters, ``GET|POST config``, ``POST runtime/reset``);
everything else is served by moto.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_to_bytes

from werkzeug.wrappers import Request, Response

from .errors import EmulatorError
from .jobs import BatchJobEmulator

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
JOB_PATH = "/model-invocation-job"
RUNTIME_PATH = "/model/"
CONTROL_PATH = "/_emulator/"


def credential_scope(environ: dict) -> tuple[str | None, str | None]:
    """(region, service) from a SigV4 Authorization header, or (None, None)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
        _, _, region, service, _ = scope.split("/")
        return region, service
    except (IndexError, ValueError):
        return None, None


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")


def error_response(code: str, message: str, status: int) -> Response:
    """AWS restJson error: status, ``x-amzn-ErrorType`` header and ``{"message": ...}`` body."""
    return _json_response({"message": message}, status, {"x-amzn-ErrorType": code})


class LocalStackApp:
    """Dispatching WSGI application combining moto and the Bedrock batch-job and runtime emulators."""

    def __init__(self, emulator: BatchJobEmulator, moto_app: WSGIApp | None = None) -> None:
        if moto_app is None:
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

            moto_app = DomainDispatcherApplication(create_backend_app)
        self.emulator = emulator
        self.moto_app = moto_app
        self.writes = 0  # requests to moto that may change S3 or DynamoDB (what the persister watches)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PATH):
            return self._control(Request(environ))(environ, start_response)
        region, service = credential_scope(environ)
        if service == "bedrock" and path.startswith(JOB_PATH):
            return self._bedrock(Request(environ), region)(environ, start_response)
        if service == "bedrock" and path.startswith(RUNTIME_PATH):
            return self._runtime(Request(environ))(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            self.writes += 1
        if (refused := self._copy_source_changed(environ)) is not None:
            return refused(environ, start_response)
        return self.moto_app(environ, start_response)

    def _copy_source_changed(self, environ: dict) -> Response | None:
        """CopyObject's ``x-amz-copy-source-if-match``, which moto ignores: S3 copies only if the source's ETag
        is the one given, else answers 412 PreconditionFailed
        (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html). The source is asked for with a
        HEAD to moto (path-style, as boto3 addresses the local stack); a missing source is left to moto."""
        expected = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
        source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        if environ.get("REQUEST_METHOD") != "PUT" or not expected or not source:
            return None
        raw_path, _, query = source.partition("?")  # bucket/key, percent-encoded; versionId=... if any
        raw_path = "/" + raw_path.lstrip("/")
        path = unquote_to_bytes(raw_path).decode("latin-1")  # WSGI's PATH_INFO: the bytes as latin-1
        ask = {k: v for k, v in environ.items() if not k.startswith("HTTP_X_AMZ_COPY_SOURCE")}
        ask.update(REQUEST_METHOD="HEAD", PATH_INFO=path, RAW_URI=raw_path, REQUEST_URI=raw_path)
        ask.update(QUERY_STRING=query, CONTENT_LENGTH="0", **{"wsgi.input": io.BytesIO()})
        answer: dict[str, Any] = {}

        def start(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            answer.update(status=int(status.split()[0]), headers=dict(headers))

        for _ in self.moto_app(ask, start):
            pass
        etag = answer.get("headers", {}).get("ETag")
        if answer.get("status") != 200 or etag is None or etag.strip('"') == expected.strip('"'):
            return None
        message = "At least one of the pre-conditions you specified did not hold"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>'
            f"<Message>{message}</Message><Condition>x-amz-copy-source-If-Match</Condition></Error>"
        )
        return Response(body, status=412, content_type="application/xml")

    @staticmethod
    def _path_parts(request: Request) -> tuple[str, list[str]]:
        """The raw path (labels still percent-encoded, so an ARN's '/' stays one label) and its labels."""
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
        raw_path = raw.split("?", 1)[0]
        return raw_path, [unquote(p) for p in raw_path.split("/") if p]

    def _runtime(self, request: Request) -> Response:
        raw_path, parts = self._path_parts(request)
        try:
            if len(parts) == 3 and parts[0] == "model" and request.method == "POST":
                runtime = self.emulator.runtime
                if parts[2] == "invoke":
                    tier = request.headers.get("X-Amzn-Bedrock-Service-Tier")
                    res = runtime.invoke_model(parts[1], request.get_data(), tier)
                    headers = {
                        "X-Amzn-Bedrock-Input-Token-Count": str(res.input_tokens),
                        "X-Amzn-Bedrock-Output-Token-Count": str(res.output_tokens),
                        "X-Amzn-Bedrock-Invocation-Latency": "0",
                        "X-Amzn-Bedrock-Service-Tier": tier or "default",  # the tier that served it
                    }
                    return Response(res.output_json, status=200, headers=headers, content_type="application/json")
                if parts[2] == "converse":
                    data = request.get_data()
                    res = runtime.converse(parts[1], data)
                    return Response(
                        _with_tier(res.output_json or "{}", data), status=200, content_type="application/json"
                    )
            raise EmulatorError(
                "UnknownOperationException", f"No emulated operation for {request.method} {raw_path}", 404
            )
        except EmulatorError as exc:
            return error_response(exc.code, exc.message, exc.http_status)
        except Exception as exc:  # pragma: no cover - defensive
            return error_response("InternalServerException", f"{type(exc).__name__}: {exc}", 500)

    def _bedrock(self, request: Request, region: str | None) -> Response:
        raw_path, parts = self._path_parts(request)
        method = request.method
        try:
            if parts == ["model-invocation-job"] and method == "POST":
                try:
                    body = json.loads(request.get_data() or b"{}")
                except ValueError:
                    raise EmulatorError("ValidationException", "Request body is not valid JSON.", 400) from None
                return _json_response(self.emulator.create(body, region=region))
            if parts == ["model-invocation-jobs"] and method == "GET":
                query = {k: v[-1] for k, v in parse_qs(request.query_string.decode(), keep_blank_values=True).items()}
                return _json_response(self.emulator.list(query))
            if len(parts) == 2 and parts[0] == "model-invocation-job" and method == "GET":
                return _json_response(self.emulator.get(parts[1]))
            if len(parts) == 3 and parts[0] == "model-invocation-job" and parts[2] == "stop" and method == "POST":
                return _json_response(self.emulator.stop(parts[1]))
            raise EmulatorError("UnknownOperationException", f"No emulated operation for {method} {raw_path}", 404)
        except EmulatorError as exc:
            return error_response(exc.code, exc.message, exc.http_status)
        except Exception as exc:  # pragma: no cover - defensive
            return error_response("InternalServerException", f"{type(exc).__name__}: {exc}", 500)

    def _control(self, request: Request) -> Response:
        path = request.path
        if path == "/_emulator/health" and request.method == "GET":
            return _json_response(
                {
                    "status": "ok",
                    "jobs": self.emulator.job_count(),
                    "runtime_calls": self.emulator.runtime.calls(),
                    "runtime_errors": self.emulator.runtime.errors(),
                }
            )
        if path == "/_emulator/runtime/reset" and request.method == "POST":
            self.emulator.runtime.reset_counts()
            return _json_response({"runtime_calls": self.emulator.runtime.calls()})
        if path == "/_emulator/config" and request.method == "GET":
            return _json_response(self.emulator.config())
        if path == "/_emulator/config" and request.method == "POST":
            try:
                knobs = json.loads(request.get_data() or b"{}")
                if not isinstance(knobs, dict):
                    raise ValueError("body must be a JSON object")
                return _json_response(self.emulator.configure(**knobs))
            except (ValueError, TypeError) as exc:
                return error_response("ValidationException", str(exc), 400)
        return error_response("NotFound", f"unknown control endpoint {request.method} {path}", 404)


def _with_tier(answer: str, request: bytes) -> str:
    """A Converse response with the ``serviceTier`` that served it (ConverseResponse.serviceTier)."""
    try:
        tier = (json.loads(request or b"{}").get("serviceTier") or {}).get("type") or "default"
    except (ValueError, AttributeError):
        tier = "default"
    return json.dumps({**json.loads(answer), "serviceTier": {"type": tier}})
