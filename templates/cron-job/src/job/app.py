"""Runs once per schedule tick; EventBridge passes the scheduled time."""
import json
import os


def handler(event, context):
    when = event.get("time", "unknown")
    print(json.dumps({"job": "nightly", "scheduled_for": when, "mode": os.environ.get("MODE")}))
    return {"ok": True, "scheduled_for": when}
