"""Answers requests; the version in the response shows the canary at work."""
import json


def handler(event, context):
    return {
        "statusCode": 200,
        "body": json.dumps({"hello": event.get("name", "world"), "version": context.function_version}),
    }
