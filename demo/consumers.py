"""Event consumers of the demo services in the choreographed order saga.

Each consumer handles one event in one transaction. It claims the event in
its inbox, changes its service's state and stores the next event in the
outbox. So a redelivered event changes nothing, and no change is left
without its event. The handlers call the service functions of
``demo.services`` in the worker, as each service's own consumer process
would, so no consumer makes an HTTP call.

A consumer is subject to its service's injected faults like the service's
HTTP endpoints are: the added latency, and a share of deliveries that
fail before anything is written. A failed delivery is retried with
backoff. A forward step (reserve, charge, schedule) gives up after
``FORWARD_ATTEMPTS`` and publishes its failure event, which starts the
compensations. Compensations and the order confirmation are retried
``RETRY_ATTEMPTS`` times and then left to the relay's redelivery, until
the run's deadline.
"""

import logging
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import transaction

from controlplane import outbox
from demo import events, faults, services
from demo.services import ServiceError

logger = logging.getLogger(__name__)

FORWARD_ATTEMPTS = 3
RETRY_ATTEMPTS = 8
# Backoff between two attempts of one delivery, in seconds: 0.5, 1, 2, 4, 4...
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 4.0


class InjectedFault(Exception):
    """The service's fault setting failed this delivery; nothing was written."""


class RetryLater(Exception):
    """The delivery failed and should be tried again after ``countdown`` s."""

    def __init__(self, message: str, countdown: float) -> None:
        super().__init__(message)
        self.countdown = countdown

    def __reduce__(self) -> tuple[type, tuple[str, float]]:
        # Exception pickles only self.args, and __init__ needs the countdown
        # too. Celery pickles the exception a task raises after its retries.
        return type(self), (str(self), self.countdown)


def _order(payload: dict[str, Any]) -> dict[str, Any]:
    keys = ("customer_id", "product_id", "quantity", "amount")
    return {key: payload[key] for key in keys if key in payload}


def _failure(event_type: str) -> Callable[..., tuple[str, dict[str, Any]]]:
    def build(payload: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
        return event_type, {**_order(payload), "reason": reason}

    return build


def _reserve(reference: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    try:
        services.reserve(reference, payload["product_id"], int(payload["quantity"]))
    except ServiceError as exc:
        return _failure(events.INVENTORY_RESERVATION_FAILED)(payload, exc.detail)
    return events.INVENTORY_RESERVED, _order(payload)


def _charge(reference: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    try:
        services.charge(reference, payload["customer_id"], Decimal(payload["amount"]))
    except ServiceError as exc:
        return _failure(events.PAYMENT_FAILED)(payload, exc.detail)
    return events.PAYMENT_COMPLETED, _order(payload)


def _schedule(reference: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    try:
        services.schedule_shipment(
            reference,
            payload["customer_id"],
            payload["product_id"],
            int(payload["quantity"]),
        )
    except ServiceError as exc:
        return _failure(events.SHIPMENT_FAILED)(payload, exc.detail)
    return events.SHIPMENT_SCHEDULED, _order(payload)


def _confirm(reference: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # A ServiceError here means the order was cancelled meanwhile. It rolls
    # the delivery back, and redelivery tries again until the run's deadline.
    services.confirm_order(reference)
    return events.ORDER_CONFIRMED, _order(payload)


def _refund(reference: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    services.refund(reference)
    return events.PAYMENT_REFUNDED, _order(payload)


def _release(reference: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    services.release(reference)
    return events.INVENTORY_RELEASED, _order(payload)


def _cancel(reference: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    services.cancel_order(reference)
    return events.ORDER_CANCELLED, {**_order(payload), "reason": payload.get("reason")}


# (consumer, event type) -> (function, event published when attempts run out)
HANDLERS: dict[tuple[str, str], tuple[Callable[..., Any], str | None]] = {
    ("inventory", events.ORDER_CREATED): (
        _reserve,
        events.INVENTORY_RESERVATION_FAILED,
    ),
    ("payment", events.INVENTORY_RESERVED): (_charge, events.PAYMENT_FAILED),
    ("shipping", events.PAYMENT_COMPLETED): (_schedule, events.SHIPMENT_FAILED),
    ("order", events.SHIPMENT_SCHEDULED): (_confirm, None),
    ("payment", events.SHIPMENT_FAILED): (_refund, None),
    ("inventory", events.PAYMENT_FAILED): (_release, None),
    ("inventory", events.PAYMENT_REFUNDED): (_release, None),
    ("order", events.INVENTORY_RESERVATION_FAILED): (_cancel, None),
    ("order", events.INVENTORY_RELEASED): (_cancel, None),
}


def consume(consumer: str, message: dict[str, Any], attempt: int) -> None:
    """Handle one delivery of an event; raise RetryLater to try it again.

    1. Apply the service's injected latency and failure share.
    2. When a fault hits and attempts remain, raise RetryLater; when a
       forward step's attempts run out, publish its failure event instead.
    3. Otherwise claim the inbox, apply the change and publish the next
       event, all in one transaction.
    """
    key = (consumer, message["event_type"])
    if key not in HANDLERS:
        logger.warning("consumer=%s has no handler for %s", consumer, key[1])
        return
    function, give_up_event = HANDLERS[key]
    with outbox.consume_span(consumer, message) as span:
        span.set_attribute("messaging.attempt", attempt)
        try:
            _inject_fault(consumer)
        except InjectedFault as exc:
            budget = FORWARD_ATTEMPTS if give_up_event else RETRY_ATTEMPTS
            if attempt < budget:
                raise RetryLater(str(exc), backoff(attempt)) from exc
            if give_up_event is None:
                logger.error(
                    "consumer=%s event=%s %s failed %s times, left for redelivery: %s",
                    consumer,
                    message["event_id"],
                    message["event_type"],
                    attempt,
                    exc,
                )
                return
            reason = f"gave up after {attempt} attempts: {exc}"
            _apply(consumer, message, lambda ref, p: _failure(give_up_event)(p, reason))
            return
        _apply(consumer, message, function)


def _apply(
    consumer: str,
    message: dict[str, Any],
    function: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]],
) -> None:
    reference = message["correlation_id"]
    with transaction.atomic():
        if not outbox.claim_inbox(consumer, message):
            return
        event_type, payload = function(reference, message["payload"])
        outbox.emit(consumer, event_type, reference, payload)


def _inject_fault(service: str) -> None:
    fault = faults.current_fault(service, time.monotonic())
    if fault.latency_ms:
        time.sleep(fault.latency_ms / 1000)
    # random() is in [0, 1), so a rate of 1.0 fails every delivery.
    if fault.error_rate and random.random() < fault.error_rate:
        raise InjectedFault(
            f"Fault injected: the {service} service fails "
            f"{fault.error_rate:.0%} of its work."
        )


def backoff(attempt: int) -> float:
    """Return the seconds to wait after the given failed attempt."""
    return float(min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (attempt - 1)))
