"""Turns order status changes from the table stream into events on the bus."""
import json
import os

import boto3

events = boto3.client("events")


def changes(records):
    for record in records:
        new = record["dynamodb"].get("NewImage", {})
        old = record["dynamodb"].get("OldImage", {})
        status = new.get("status", {}).get("S")
        if status and status != old.get("status", {}).get("S"):
            yield new["orderId"]["S"], status


def handler(event, context):
    entries = [
        {
            "Source": "shop.orders",
            "DetailType": "OrderShipped" if status == "shipped" else "OrderStatusChanged",
            "Detail": json.dumps({"orderId": order_id, "status": status}),
            "EventBusName": os.environ["BUS"],
        }
        for order_id, status in changes(event["Records"])
    ]
    for start in range(0, len(entries), 10):
        result = events.put_events(Entries=entries[start:start + 10])
        if result["FailedEntryCount"]:
            raise RuntimeError(f"{result['FailedEntryCount']} events were not accepted")
    return {"published": len(entries)}
