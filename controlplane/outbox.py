"""Transactional outbox, its relay and the consumers' inbox.

A service calls ``emit`` inside the transaction of its state change, so the
event row commits with the change or not at all. The relay publishes
unsent rows as Celery messages, one per subscriber (``demo.events``), and
marks each row sent afterwards. It runs right after the commit that wrote
a row and on a beat schedule, so a relay lost between the commit and the
publish leaves the row pending for the next pass.

Delivery is at least once. A relay lost between the publish and the mark
publishes the row again, and ``redeliver_unconsumed`` publishes again to a
subscriber whose inbox still lacks an event after
``OUTBOX_REDELIVER_AFTER_SECONDS``, because a worker killed with the
message in hand keeps it unacknowledged until the broker's visibility
timeout (an hour). Consumers make this safe with ``claim_inbox``.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from opentelemetry import trace

from controlplane import tracing
from controlplane.models import InboxEvent, OutboxEvent
from demo.events import SUBSCRIBER_TASKS, TRACKER, subscribers_of
from resilience.services import redis_client

logger = logging.getLogger(__name__)

RELAY_LOCK_KEY = "rcp:outbox:relay"
# Rows one relay pass publishes at most; the next pass takes the rest.
RELAY_BATCH_SIZE = 200


def emit(
    service: str, event_type: str, correlation_id: str, payload: dict[str, Any]
) -> OutboxEvent:
    """Store an event in the outbox; call it inside the state change's transaction.

    The current span's context travels with the event, and the relay is
    asked to run once the transaction commits.
    """
    span = trace.get_current_span()
    event = OutboxEvent.objects.create(
        service=service,
        event_type=event_type,
        correlation_id=correlation_id,
        payload=payload,
        traceparent=tracing.traceparent_of(span),
        created_at=timezone.now(),
    )
    logger.info(
        "service=%s event=%s %s for %s stored in the outbox",
        service,
        event.event_id,
        event_type,
        correlation_id,
    )
    transaction.on_commit(request_relay)
    return event


def request_relay() -> None:
    from controlplane import tasks

    try:
        tasks.relay_outbox.delay()
    except Exception as exc:  # the broker's error type depends on the transport
        # The row is committed; the beat schedule's relay pass publishes it.
        logger.warning("outbox relay not requested, beat will run it: %s", exc)


def relay() -> tuple[int, int]:
    """Publish unsent outbox rows in order, then redeliver unconsumed events.

    Returns the rows published and the deliveries sent again. One relay
    runs at a time (a Redis lock whose expiry frees it when its holder was
    killed), so two passes do not publish the same rows.
    """
    lock = redis_client().lock(
        RELAY_LOCK_KEY, timeout=settings.OUTBOX_RELAY_LOCK_SECONDS, blocking=False
    )
    try:
        if not lock.acquire():
            return 0, 0
    except redis.RedisError as exc:
        logger.warning("outbox relay skipped, lock unavailable: %s", exc)
        return 0, 0
    try:
        rows = OutboxEvent.objects.exclude(status=OutboxEvent.Status.SENT)
        published = 0
        for event in rows.order_by("id")[:RELAY_BATCH_SIZE]:
            published += _publish_once(event)
        return published, redeliver_unconsumed()
    finally:
        with suppress(redis.RedisError):
            lock.release()


def _publish_once(event: OutboxEvent) -> int:
    _crash_if_armed()
    try:
        publish(event, subscribers_of(event.event_type))
    except Exception as exc:  # the broker's error type depends on the transport
        # NOTE: no test reaches this branch yet, because it needs a broker
        # that fails on publish. It is untested until one stops the broker.
        OutboxEvent.objects.filter(pk=event.pk).exclude(
            status=OutboxEvent.Status.SENT
        ).update(
            status=OutboxEvent.Status.FAILED,
            publish_attempts=F("publish_attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        logger.warning("event=%s publish failed: %s", event.event_id, exc)
        return 0
    OutboxEvent.objects.filter(pk=event.pk).exclude(
        status=OutboxEvent.Status.SENT
    ).update(
        status=OutboxEvent.Status.SENT,
        sent_at=timezone.now(),
        publish_attempts=F("publish_attempts") + 1,
        last_error="",
    )
    return 1


def _crash_if_armed() -> None:
    """Exit the process at once when the relay's crash point is armed.

    ``OUTBOX_RELAY_CRASH_FILE`` names a file. When it exists, the relay
    deletes it and exits before its next publish, like a process killed
    between an event's commit and its publish. Empty (the default) turns
    the check off.
    """
    path = settings.OUTBOX_RELAY_CRASH_FILE
    if not path or not os.path.exists(path):
        return
    with suppress(FileNotFoundError):
        os.unlink(path)
        logger.warning("outbox relay crash point reached: exiting before publish")
        os._exit(70)


def publish(event: OutboxEvent, subscribers: list[str]) -> None:
    """Send the event to each subscriber's task, under an "event.publish" span."""
    from controlplane.celery import app

    parent = tracing.run_context(event.traceparent)
    attributes = {
        "messaging.event_type": event.event_type,
        "messaging.message.id": str(event.event_id),
        "saga.run_id": event.correlation_id,
    }
    name = f"event.publish {event.event_type}"
    with tracing.tracer().start_as_current_span(
        name, context=parent, attributes=attributes
    ) as span:
        message = event_message(event, tracing.traceparent_of(span))
        for subscriber in subscribers:
            app.send_task(SUBSCRIBER_TASKS[subscriber], args=[subscriber, message])


def event_message(event: OutboxEvent, traceparent: str) -> dict[str, Any]:
    """Return the JSON body a subscriber receives for an event."""
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "service": event.service,
        "correlation_id": event.correlation_id,
        "payload": event.payload,
        "occurred_at": event.created_at.isoformat(),
        "traceparent": traceparent,
    }


def redeliver_unconsumed(now: datetime | None = None) -> int:
    """Publish sent events again to subscribers that have not consumed them.

    Only events sent more than ``OUTBOX_REDELIVER_AFTER_SECONDS`` ago and
    younger than ``CHOREOGRAPHY_RUN_DEADLINE_SECONDS`` qualify, each at
    most once per that interval. Returns the number of messages sent.
    """
    now = now or timezone.now()
    after = timedelta(seconds=settings.OUTBOX_REDELIVER_AFTER_SECONDS)
    oldest = now - timedelta(seconds=settings.CHOREOGRAPHY_RUN_DEADLINE_SECONDS)
    candidates = OutboxEvent.objects.filter(
        Q(consumption_checked_at__isnull=True)
        | Q(consumption_checked_at__lt=now - after),
        status=OutboxEvent.Status.SENT,
        sent_at__lt=now - after,
        created_at__gte=oldest,
    ).order_by("id")[:RELAY_BATCH_SIZE]
    sent = 0
    for event in candidates:
        consumed = set(
            InboxEvent.objects.filter(event_id=event.event_id).values_list(
                "consumer", flat=True
            )
        )
        missing = [s for s in subscribers_of(event.event_type) if s not in consumed]
        if not missing:
            OutboxEvent.objects.filter(pk=event.pk).update(consumption_checked_at=now)
            continue
        logger.warning(
            "event=%s %s not consumed by %s after %ss; publishing again",
            event.event_id,
            event.event_type,
            ", ".join(missing),
            settings.OUTBOX_REDELIVER_AFTER_SECONDS,
        )
        redeliver(event, missing, now)
        sent += len(missing)
    return sent


def redeliver(
    event: OutboxEvent, subscribers: list[str], now: datetime | None = None
) -> None:
    """Publish a sent event again to ``subscribers`` and stamp it redelivered.

    The relay's redelivery and an operator's share it. Because the relay
    skips events redelivered within ``OUTBOX_REDELIVER_AFTER_SECONDS``, an
    operator's redelivery also postpones the relay's next one.
    """
    now = now or timezone.now()
    publish(event, subscribers)
    OutboxEvent.objects.filter(pk=event.pk).update(
        redelivered_at=now, consumption_checked_at=now
    )
    event.redelivered_at = event.consumption_checked_at = now


def purge_old_events(now: datetime | None = None) -> int:
    """Delete sent outbox rows and inbox rows past their retention.

    Unsent rows are kept however old, because they are still to publish.
    Returns the number of rows deleted.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OUTBOX_RETENTION_SECONDS)
    sent, _ = OutboxEvent.objects.filter(
        status=OutboxEvent.Status.SENT, sent_at__lt=cutoff
    ).delete()
    consumed, _ = InboxEvent.objects.filter(received_at__lt=cutoff).delete()
    return sent + consumed


def claim_inbox(consumer: str, message: dict[str, Any]) -> bool:
    """Record that ``consumer`` handles this event; False if it already did.

    Call it inside the consumer's transaction, before the state change:
    the inbox row then commits with the change, or rolls back with it.
    """
    try:
        with transaction.atomic():
            InboxEvent.objects.create(
                consumer=consumer,
                event_id=message["event_id"],
                event_type=message["event_type"],
                correlation_id=message["correlation_id"],
            )
    except IntegrityError:
        InboxEvent.objects.filter(
            consumer=consumer, event_id=message["event_id"]
        ).update(duplicates=F("duplicates") + 1)
        logger.info(
            "consumer=%s event=%s already consumed; duplicate ignored",
            consumer,
            message["event_id"],
        )
        return False
    return True


@contextmanager
def consume_span(consumer: str, message: dict[str, Any]) -> Iterator[trace.Span]:
    """Open the "event.consume" span of one delivery, under its publish span."""
    attributes = {
        "messaging.event_type": message["event_type"],
        "messaging.message.id": message["event_id"],
        "messaging.consumer": consumer,
        "saga.run_id": message["correlation_id"],
    }
    name = f"event.consume {message['event_type']} by {consumer}"
    parent = tracing.run_context(message.get("traceparent", ""))
    with (
        tracing.run_logging_context(message["correlation_id"]),
        tracing.tracer().start_as_current_span(
            name, context=parent, attributes=attributes
        ) as span,
    ):
        yield span


def summary(now: datetime | None = None) -> list[dict[str, Any]]:
    """Return outbox and inbox figures per service, for the dashboard and API.

    ``oldest_unsent_age_seconds`` is None when the service has nothing unsent.
    """
    now = now or timezone.now()
    outbox = {
        row["service"]: row
        for row in OutboxEvent.objects.values("service")
        .annotate(
            pending=Count("id", filter=Q(status=OutboxEvent.Status.PENDING)),
            sent=Count("id", filter=Q(status=OutboxEvent.Status.SENT)),
            failed=Count("id", filter=Q(status=OutboxEvent.Status.FAILED)),
            oldest_unsent=Min("created_at", filter=~Q(status=OutboxEvent.Status.SENT)),
        )
        .order_by()
    }
    inbox = {
        row["consumer"]: row
        for row in InboxEvent.objects.values("consumer")
        .annotate(
            consumed=Count("id"),
            duplicates_ignored=Coalesce(Sum("duplicates"), 0),
            last_consumed=Max("received_at"),
        )
        .order_by()
    }
    rows = []
    for service in SERVICE_ORDER:
        out = outbox.get(service, {})
        oldest = out.get("oldest_unsent")
        rows.append(
            {
                "service": service,
                "pending": out.get("pending", 0),
                "sent": out.get("sent", 0),
                "failed": out.get("failed", 0),
                "oldest_unsent_age_seconds": (
                    round((now - oldest).total_seconds(), 3) if oldest else None
                ),
                "consumed": inbox.get(service, {}).get("consumed", 0),
                "duplicates_ignored": inbox.get(service, {}).get(
                    "duplicates_ignored", 0
                ),
                "last_consumed_at": inbox.get(service, {}).get("last_consumed"),
            }
        )
    return rows


# Services shown in the summary: the four demo services, then the tracker.
SERVICE_ORDER = ("order", "inventory", "payment", "shipping", TRACKER)
