"""Domain events of the demo services and who subscribes to each.

The choreographed order saga has no coordinator: each service reacts to
the events of the others. Forward, an order travels OrderCreated ->
InventoryReserved -> PaymentCompleted -> ShipmentScheduled ->
OrderConfirmed. A failure event starts the compensations backwards:
ShipmentFailed -> PaymentRefunded -> InventoryReleased -> OrderCancelled,
entered at PaymentFailed or InventoryReservationFailed when an earlier
step fails. Every event goes to the control plane's run tracker
(subscriber ``sagas``) as well, which assembles the run from them.
"""

ORDER_CREATED = "OrderCreated"
INVENTORY_RESERVED = "InventoryReserved"
INVENTORY_RESERVATION_FAILED = "InventoryReservationFailed"
PAYMENT_COMPLETED = "PaymentCompleted"
PAYMENT_FAILED = "PaymentFailed"
SHIPMENT_SCHEDULED = "ShipmentScheduled"
SHIPMENT_FAILED = "ShipmentFailed"
ORDER_CONFIRMED = "OrderConfirmed"
PAYMENT_REFUNDED = "PaymentRefunded"
INVENTORY_RELEASED = "InventoryReleased"
ORDER_CANCELLED = "OrderCancelled"

EVENT_TYPES = (
    ORDER_CREATED,
    INVENTORY_RESERVED,
    INVENTORY_RESERVATION_FAILED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    SHIPMENT_SCHEDULED,
    SHIPMENT_FAILED,
    ORDER_CONFIRMED,
    PAYMENT_REFUNDED,
    INVENTORY_RELEASED,
    ORDER_CANCELLED,
)

TRACKER = "sagas"

# The demo service that consumes each event (the tracker gets them all).
CONSUMER_OF = {
    ORDER_CREATED: "inventory",
    INVENTORY_RESERVED: "payment",
    INVENTORY_RESERVATION_FAILED: "order",
    PAYMENT_COMPLETED: "shipping",
    PAYMENT_FAILED: "inventory",
    SHIPMENT_SCHEDULED: "order",
    SHIPMENT_FAILED: "payment",
    PAYMENT_REFUNDED: "inventory",
    INVENTORY_RELEASED: "order",
}

# Celery task that delivers an event to each kind of subscriber.
SUBSCRIBER_TASKS = {
    "order": "demo.consume_event",
    "inventory": "demo.consume_event",
    "payment": "demo.consume_event",
    "shipping": "demo.consume_event",
    TRACKER: "sagas.record_event",
}


def subscribers_of(event_type: str) -> list[str]:
    """Return the subscribers an event of this type is published to."""
    consumer = CONSUMER_OF.get(event_type)
    return [consumer, TRACKER] if consumer else [TRACKER]
