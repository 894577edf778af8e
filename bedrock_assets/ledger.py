"""The job ledger: one DynamoDB item per shard attempt, written with conditional updates."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Optional

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from dagster import ConfigurableResource
from pydantic import Field

# Our own states around Bedrock's: waiting for a slot, submission in flight, rejected at submission.
QUEUED = "Queued"
SUBMITTING = "Submitting"
SUBMIT_FAILED = "SubmitFailed"
IN_FLIGHT = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
TERMINAL = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")


class LedgerConflict(RuntimeError):
    """Another run changed the item first (a conditional write failed)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def sort_key(shard: str, attempt: int) -> str:
    return f"{shard}#{attempt:04d}"


class JobLedger:
    """Items keyed by (pipeline, "<shard>#<attempt>"), so one Query lists a pipeline's jobs."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def attempts(self, pipeline: str, shard: str) -> list[dict[str, Any]]:
        return self._query(Key("pipeline").eq(pipeline) & Key("shard_attempt").begins_with(f"{shard}#"))

    def latest(self, pipeline: str, shard: str) -> dict[str, Any] | None:
        items = self.attempts(pipeline, shard)
        return items[-1] if items else None

    def latest_by_shard(self, pipeline: str) -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for item in self._query(Key("pipeline").eq(pipeline)):
            latest[item["shard"]] = item  # items arrive in sort-key order: last attempt wins
        return latest

    def create(self, item: dict[str, Any]) -> None:
        """Insert a new attempt; LedgerConflict if that attempt already exists."""
        item = {**item, "shard_attempt": sort_key(item["shard"], item["attempt"]), "updated_at": now_iso()}
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("shard_attempt").not_exists())
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LedgerConflict(f"{item['pipeline']}/{item['shard_attempt']} already exists") from None
            raise

    def update(
        self, pipeline: str, shard: str, attempt: int, *, expect_status: Optional[tuple[str, ...]] = None, **fields: Any
    ) -> None:
        """Set fields on an attempt; with ``expect_status``, only if its status is one of those."""
        fields = {k: v for k, v in {**fields, "updated_at": now_iso()}.items()}
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(fields.values())}
        kwargs: dict[str, Any] = {
            "Key": {"pipeline": pipeline, "shard_attempt": sort_key(shard, attempt)},
            "UpdateExpression": "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        condition = Attr("shard_attempt").exists()
        if expect_status:
            condition = condition & Attr("status").is_in(list(expect_status))
        kwargs["ConditionExpression"] = condition
        try:
            self.table.update_item(**kwargs)
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LedgerConflict(f"{pipeline}/{sort_key(shard, attempt)}: status not in {expect_status}") from None
            raise

    def _query(self, condition: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True}
        while True:
            page = self.table.query(**kwargs)
            items.extend(_plain(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class JobLedgerResource(ConfigurableResource):
    """DynamoDB job ledger. The table is created on first use when ``create_if_missing``."""

    table_name: str = Field(default="bedrock-assets-jobs", description="DynamoDB table name")
    region_name: Optional[str] = Field(default=None, description="region; boto3's default chain if unset")
    profile_name: Optional[str] = None
    create_if_missing: bool = True

    def get_ledger(self) -> JobLedger:
        session = boto3.session.Session(profile_name=self.profile_name, region_name=self.region_name)
        dynamodb = session.resource("dynamodb")
        table = dynamodb.Table(self.table_name)
        if self.create_if_missing:
            _ensure_table(session.client("dynamodb"), self.table_name)
        return JobLedger(table)


def _ensure_table(client: Any, name: str) -> None:
    try:
        client.describe_table(TableName=name)
        return
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    try:
        client.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pipeline", "KeyType": "HASH"},
                {"AttributeName": "shard_attempt", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pipeline", "AttributeType": "S"},
                {"AttributeName": "shard_attempt", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceInUseException":  # created by a concurrent run
            raise
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
