"""The error type every emulated Bedrock API raises."""

from __future__ import annotations


class EmulatorError(Exception):
    """An API error, rendered by the HTTP layer as an AWS restJson error."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
