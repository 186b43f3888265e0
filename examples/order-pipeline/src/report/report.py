"""Nightly: counts orders by status and logs the summary."""
import collections
import os

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE"])


def handler(event, context):
    counts = collections.Counter()
    kwargs = {"ProjectionExpression": "#s", "ExpressionAttributeNames": {"#s": "status"}}
    while True:
        page = table.scan(**kwargs)
        counts.update(item.get("status", "unknown") for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    print({"orders_by_status": dict(counts)})
    return dict(counts)
