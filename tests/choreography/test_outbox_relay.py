"""The outbox relay and redelivery against the test database and real Redis.

The relay publishes to the Celery broker in ``REDIS_URL``; no worker reads
that queue here, so each test counts the messages it left there. Only the
clock passed to the relay's functions is faked.
"""

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from controlplane import outbox
from controlplane.models import InboxEvent, OutboxEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The broker's Redis with an empty task queue, emptied again after."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    client.delete(queue, outbox.RELAY_LOCK_KEY)
    yield client
    client.delete(queue, outbox.RELAY_LOCK_KEY)


def queued(broker: redis.Redis) -> int:
    return int(broker.llen(settings.CELERY_TASK_DEFAULT_QUEUE))


def stored_event(event_type: str = "OrderCreated", **fields: Any) -> OutboxEvent:
    values: dict[str, Any] = {
        "service": "order",
        "event_type": event_type,
        "correlation_id": str(uuid.uuid4()),
        "created_at": timezone.now(),
    }
    values.update(fields)
    return OutboxEvent.objects.create(**values)


def test_relay_publishes_each_row_once(broker: redis.Redis) -> None:
    first = stored_event("OrderCreated")
    second = stored_event("OrderConfirmed")

    assert outbox.relay() == (2, 0)
    assert outbox.relay() == (0, 0)

    for event in (first, second):
        event.refresh_from_db()
        assert event.status == OutboxEvent.Status.SENT
        assert event.publish_attempts == 1
        assert event.sent_at is not None
    # OrderCreated goes to inventory and the tracker, OrderConfirmed to the
    # tracker only.
    assert queued(broker) == 3


def test_relay_waits_for_lock_holder(broker: redis.Redis) -> None:
    event = stored_event()
    broker.set(outbox.RELAY_LOCK_KEY, "another relay", ex=10)

    assert outbox.relay() == (0, 0)

    event.refresh_from_db()
    assert event.status == OutboxEvent.Status.PENDING
    assert queued(broker) == 0


def test_redelivery_to_missing_consumer(broker: redis.Redis) -> None:
    now = timezone.now()
    after = timedelta(seconds=settings.OUTBOX_REDELIVER_AFTER_SECONDS)
    event = stored_event(
        status=OutboxEvent.Status.SENT,
        created_at=now - after * 2,
        sent_at=now - after * 2,
    )
    InboxEvent.objects.create(
        consumer="sagas",
        event_id=event.event_id,
        event_type=event.event_type,
        correlation_id=event.correlation_id,
    )

    assert outbox.redeliver_unconsumed(now) == 1
    assert queued(broker) == 1
    # Redelivered at most once per interval.
    assert outbox.redeliver_unconsumed(now + after / 2) == 0
    assert outbox.redeliver_unconsumed(now + after * 1.5) == 1
    event.refresh_from_db()
    assert event.redelivered_at == now + after * 1.5


def test_redelivery_skips_consumed_and_old(broker: redis.Redis) -> None:
    now = timezone.now()
    after = timedelta(seconds=settings.OUTBOX_REDELIVER_AFTER_SECONDS)
    deadline = timedelta(seconds=settings.CHOREOGRAPHY_RUN_DEADLINE_SECONDS)
    consumed = stored_event(
        "OrderConfirmed", status=OutboxEvent.Status.SENT, sent_at=now - after * 2
    )
    InboxEvent.objects.create(
        consumer="sagas",
        event_id=consumed.event_id,
        event_type=consumed.event_type,
        correlation_id=consumed.correlation_id,
    )
    stored_event(
        status=OutboxEvent.Status.SENT,
        created_at=now - deadline - after,
        sent_at=now - deadline - after,
    )
    stored_event(status=OutboxEvent.Status.SENT, sent_at=now)

    assert outbox.redeliver_unconsumed(now) == 0
    assert queued(broker) == 0


def test_summary_counts_per_service() -> None:
    now = timezone.now()
    stored_event(created_at=now - timedelta(seconds=12))
    stored_event(
        status=OutboxEvent.Status.FAILED, created_at=now - timedelta(seconds=5)
    )
    stored_event(status=OutboxEvent.Status.SENT, created_at=now - timedelta(hours=1))

    rows = {row["service"]: row for row in outbox.summary(now)}

    assert rows["order"]["pending"] == 1
    assert rows["order"]["failed"] == 1
    assert rows["order"]["sent"] == 1
    assert rows["order"]["oldest_unsent_age_seconds"] == 12.0
    assert rows["payment"]["pending"] == 0
    assert rows["payment"]["oldest_unsent_age_seconds"] is None
    assert list(rows) == ["order", "inventory", "payment", "shipping", "sagas"]


def test_purge_keeps_unsent_and_recent() -> None:
    now = timezone.now()
    retention = timedelta(seconds=settings.OUTBOX_RETENTION_SECONDS)
    old = now - retention - timedelta(seconds=1)
    expired = stored_event(status=OutboxEvent.Status.SENT, created_at=old, sent_at=old)
    unsent = stored_event(created_at=old)
    recent = stored_event(status=OutboxEvent.Status.SENT, sent_at=now)
    inbox = InboxEvent.objects.create(
        consumer="sagas",
        event_id=expired.event_id,
        event_type=expired.event_type,
        correlation_id=expired.correlation_id,
    )
    InboxEvent.objects.filter(pk=inbox.pk).update(received_at=old)

    assert outbox.purge_old_events(now) == 2

    remaining = set(OutboxEvent.objects.values_list("pk", flat=True))
    assert remaining == {unsent.pk, recent.pk}
    assert not InboxEvent.objects.exists()


def test_consumed_event_is_not_marked_redelivered(broker: redis.Redis) -> None:
    now = timezone.now()
    after = timedelta(seconds=settings.OUTBOX_REDELIVER_AFTER_SECONDS)
    event = stored_event(
        status=OutboxEvent.Status.SENT,
        created_at=now - after * 2,
        sent_at=now - after * 2,
    )
    for consumer in outbox.subscribers_of(event.event_type):
        InboxEvent.objects.create(
            consumer=consumer,
            event_id=event.event_id,
            event_type=event.event_type,
            correlation_id=event.correlation_id,
        )

    assert outbox.redeliver_unconsumed(now) == 0

    event.refresh_from_db()
    assert event.redelivered_at is None
    assert event.consumption_checked_at == now
    assert queued(broker) == 0
