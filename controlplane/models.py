"""Idempotency records, keys that saga steps send downstream, and stored spans.

Both tables refer to saga runs by their UUID instead of a foreign key. A
record logs one request and stays readable after its run is deleted, and
the project app needs no migration dependency on the saga app.
"""

import uuid

from django.conf import settings
from django.db import models


class IdempotencyRecord(models.Model):
    """The claim and, once finished, the stored response of one client key.

    A key is scoped to its principal and endpoint: the unique constraint on
    (principal, key, method, route) is what makes the claim atomic, because
    two requests with the same key cannot both insert a row.
    ``claim_token`` is replaced on every claim, so only the request that
    holds the current claim can complete or release the record.
    """

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    principal = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    route = models.CharField(max_length=255)
    path = models.CharField(max_length=2048)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.IN_PROGRESS
    )
    claim_token = models.UUIDField(default=uuid.uuid4)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True)
    # NULL, not "", when the request carried no valid traceparent, so "has a
    # trace" is a plain IS NOT NULL filter.
    trace_id = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    run_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["principal", "key", "method", "route"],
                name="unique_idempotency_key_per_principal_endpoint",
            )
        ]
        indexes = [
            models.Index(fields=["-created_at"]),
            models.Index(fields=["expires_at"]),
            models.Index(fields=["status", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.route} {self.key} ({self.status})"

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.route}"


class DownstreamKey(models.Model):
    """An ``Idempotency-Key`` that a saga step sent to a downstream service.

    There is one row per run, step and part (action or compensation),
    because the key is the same on every retry and redelivery of that part.
    ``sends`` counts the step executions that sent it.
    """

    class Part(models.TextChoices):
        ACTION = "action"
        COMPENSATION = "compensation"

    run_id = models.UUIDField(db_index=True)
    step_name = models.CharField(max_length=64)
    part = models.CharField(max_length=16, choices=Part.choices)
    target = models.CharField(max_length=64)
    key = models.CharField(max_length=255, unique=True)
    first_sent_at = models.DateTimeField()
    last_sent_at = models.DateTimeField()
    sends = models.PositiveIntegerField(default=1)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-first_sent_at", "-id"]

    def __str__(self) -> str:
        return f"{self.key} -> {self.target}"


class Span(models.Model):
    """One finished OpenTelemetry span, as stored by the database exporter.

    Ids are lowercase hex as in a W3C ``traceparent``: 32 digits for the
    trace, 16 for a span. ``parent_span_id`` is empty for a root span, and
    ``run_id`` is the saga run the span belongs to, when it has the
    ``saga.run_id`` attribute.
    """

    trace_id = models.CharField(max_length=32, db_index=True)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=255)
    service = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField()
    duration_ms = models.FloatField()
    status = models.CharField(max_length=8)
    status_message = models.TextField(blank=True)
    attributes = models.JSONField(default=dict)
    events = models.JSONField(default=list)
    run_id = models.UUIDField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["start", "id"]

    def __str__(self) -> str:
        return f"{self.trace_id}/{self.span_id} {self.name}"


class OutboxEvent(models.Model):
    """A domain event, stored in the transaction of the change it reports.

    The relay (``controlplane.outbox``) publishes unsent rows to the broker
    and marks them sent. ``failed`` means the last publish attempt raised;
    the relay tries such a row again on each pass, like a pending one.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    service = models.CharField(max_length=32)
    event_type = models.CharField(max_length=64)
    # The saga run id: every event of one run carries it.
    correlation_id = models.CharField(max_length=64, db_index=True)
    payload = models.JSONField(default=dict)
    # W3C trace context of the span that wrote the event.
    traceparent = models.CharField(max_length=55, blank=True)
    status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.PENDING
    )
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # When it was last published again, by an operator or by the relay.
    redelivered_at = models.DateTimeField(null=True, blank=True)
    # When the relay last looked for subscribers that had not consumed it,
    # so that it looks at most once per OUTBOX_REDELIVER_AFTER_SECONDS.
    consumption_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "id"]),
            models.Index(fields=["service", "status"]),
            models.Index(fields=["sent_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.event_type} {self.correlation_id}"


class InboxEvent(models.Model):
    """An event that one consumer handled, written with the change it made.

    The unique (consumer, event_id) pair makes a redelivered event a no-op;
    ``duplicates`` counts the deliveries that found the row already there.
    """

    consumer = models.CharField(max_length=32)
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=64)
    correlation_id = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)
    duplicates = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["consumer", "event_id"], name="inbox_event_once_per_consumer"
            )
        ]
        indexes = [models.Index(fields=["event_id"])]

    def __str__(self) -> str:
        return f"{self.consumer} {self.event_type} {self.event_id}"
