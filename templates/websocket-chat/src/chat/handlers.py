"""WebSocket chat: connections live in CONNECTIONS_TABLE, messages fan out."""
import json
import os
import time

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])


def connect(event, context):
    TABLE.put_item(Item={
        "connectionId": event["requestContext"]["connectionId"],
        "expiresAt": int(time.time()) + 2 * 3600,
    })
    return {"statusCode": 200}


def disconnect(event, context):
    TABLE.delete_item(Key={"connectionId": event["requestContext"]["connectionId"]})
    return {"statusCode": 200}


def send(event, context):
    text = json.loads(event.get("body") or "{}").get("text", "")
    api = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CALLBACK_URL"])
    data = json.dumps({"from": event["requestContext"]["connectionId"], "text": text}).encode()
    for item in TABLE.scan(ProjectionExpression="connectionId").get("Items", []):
        try:
            api.post_to_connection(ConnectionId=item["connectionId"], Data=data)
        except api.exceptions.GoneException:
            TABLE.delete_item(Key={"connectionId": item["connectionId"]})
    return {"statusCode": 200}
