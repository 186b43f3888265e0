"""Processes queued orders; a failing record is retried, then dead-lettered."""
import json


def process(order):
    total = sum(item["price"] * item.get("quantity", 1) for item in order["items"])
    if total <= 0:
        raise ValueError(f"order {order['id']} has no positive total")
    return total


def handler(event, context):
    failures = []
    for record in event.get("Records", []):
        try:
            process(json.loads(record["body"]))
        except (KeyError, ValueError) as err:
            print(f"failed {record['messageId']}: {err}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
