"""Local stack: moto (S3, DynamoDB) plus an emulator for Bedrock batch inference jobs and bedrock-runtime."""

from .errors import EmulatorError
from .faults import FaultConfig
from .jobs import BatchJobEmulator
from .runtime import RuntimeEmulator
from .server import LocalStack, serve_forever

__all__ = ["BatchJobEmulator", "EmulatorError", "FaultConfig", "LocalStack", "RuntimeEmulator", "serve_forever"]
