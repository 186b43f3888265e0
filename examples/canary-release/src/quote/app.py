"""Prices quote requests from the queue; the hourly run refreshes the rate table."""
import json

RATES = {"standard": 1.00, "express": 1.75}


def price(request):
    weight = float(request["weight_kg"])
    if weight <= 0:
        raise ValueError("weight must be positive")
    return round(weight * RATES[request.get("service", "standard")], 2)


def handler(event, context):
    if "Records" not in event:
        return {"rates": RATES}
    failures = []
    for record in event["Records"]:
        try:
            print(json.dumps({"quote": price(json.loads(record["body"]))}))
        except (KeyError, ValueError) as err:
            print(f"rejecting {record['messageId']}: {err}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
