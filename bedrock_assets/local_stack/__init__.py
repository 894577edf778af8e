"""Local stack: moto (S3, DynamoDB) plus an emulator for Bedrock batch inference jobs."""

from .faults import FaultConfig
from .jobs import BatchJobEmulator, EmulatorError
from .server import LocalStack, serve_forever

__all__ = ["BatchJobEmulator", "EmulatorError", "FaultConfig", "LocalStack", "serve_forever"]
