"""Reacts to shipped orders (the rule's input transformer sends just the id)."""


def handler(event, context):
    order_id = event["orderId"]
    print(f"order {order_id} shipped: notifying the customer")
    return {"notified": order_id}
