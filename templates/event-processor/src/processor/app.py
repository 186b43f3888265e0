"""Handles DynamoDB stream records: inserts, modifications and removals."""
import json


def handler(event, context):
    counts = {"INSERT": 0, "MODIFY": 0, "REMOVE": 0}
    for record in event.get("Records", []):
        name = record["eventName"]
        counts[name] = counts.get(name, 0) + 1
        keys = record["dynamodb"].get("Keys", {})
        print(json.dumps({"event": name, "keys": keys}))
    return counts
