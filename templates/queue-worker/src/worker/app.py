"""Processes a batch of SQS messages; failed ones are retried on their own."""
import json


def process(job):
    if "task" not in job:
        raise ValueError("a job needs a `task`")
    print(json.dumps({"done": job["task"]}))


def handler(event, context):
    failures = []
    for record in event.get("Records", []):
        try:
            process(json.loads(record["body"]))
        except Exception as e:  # noqa: BLE001 - report, let SQS retry it
            print(json.dumps({"failed": record["messageId"], "error": str(e)}))
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
