"""Accepts an order and queues it for the worker."""
import json
import os
import uuid

import boto3

sqs = boto3.client("sqs")


def handler(event, context):
    order = {"id": str(uuid.uuid4()), "items": event.get("items", []), "stage": os.environ["STAGE"]}
    if not order["items"]:
        return {"statusCode": 400, "body": json.dumps({"error": "an order needs items"})}
    sqs.send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody=json.dumps(order))
    return {"statusCode": 202, "body": json.dumps({"id": order["id"]})}
