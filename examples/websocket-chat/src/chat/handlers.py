"""WebSocket chat: connections live in a DynamoDB table (CONNECTIONS_TABLE,
added by slx for every route function) and messages are broadcast through the
API Gateway management API at CALLBACK_URL."""
import json
import os
import time

import boto3

table = boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])
CONNECTION_TTL_SECONDS = 2 * 3600


def connect(event, context):
    table.put_item(Item={
        "connectionId": event["requestContext"]["connectionId"],
        "connectedAt": int(time.time()),
        "expiresAt": int(time.time()) + CONNECTION_TTL_SECONDS,
    })
    return {"statusCode": 200}


def disconnect(event, context):
    table.delete_item(Key={"connectionId": event["requestContext"]["connectionId"]})
    return {"statusCode": 200}


def connection_ids():
    kwargs = {"ProjectionExpression": "connectionId"}
    while True:
        page = table.scan(**kwargs)
        yield from (item["connectionId"] for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def send(event, context):
    sender = event["requestContext"]["connectionId"]
    body = json.loads(event.get("body") or "{}")
    message = json.dumps({"from": sender, "text": str(body.get("text", ""))[:4096]}).encode()
    api = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CALLBACK_URL"])
    delivered = 0
    for connection_id in connection_ids():
        try:
            api.post_to_connection(ConnectionId=connection_id, Data=message)
            delivered += 1
        except api.exceptions.GoneException:
            table.delete_item(Key={"connectionId": connection_id})
    return {"statusCode": 200, "body": json.dumps({"delivered": delivered})}


def fallback(event, context):
    return {"statusCode": 400, "body": json.dumps({"error": "unknown action; use sendMessage"})}
