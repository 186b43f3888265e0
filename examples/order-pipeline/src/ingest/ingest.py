"""Writes queued orders to the orders table; reports each bad record separately."""
import json
import os
import time

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
RETENTION_SECONDS = 90 * 24 * 3600


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            order = json.loads(record["body"])
            table.put_item(Item={
                "orderId": order["orderId"],
                "status": order.get("status", "received"),
                "total": str(order["total"]),
                "expiresAt": int(time.time()) + RETENTION_SECONDS,
            })
        except (KeyError, ValueError) as err:
            print(f"rejecting {record['messageId']}: {err}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
