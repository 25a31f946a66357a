"""Periodic tasks of the project itself."""

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from controlplane import outbox, spans
from controlplane.models import IdempotencyRecord

logger = logging.getLogger(__name__)


@shared_task(name="controlplane.purge_idempotency_records")
def purge_idempotency_records() -> int:
    """Delete expired idempotency records in batches; return how many.

    Each DELETE removes at most IDEMPOTENCY_PURGE_BATCH_SIZE rows, so a large
    backlog never holds one long lock on the table. An expired key can be
    claimed again before this runs (see ``controlplane.idempotency``), so
    the purge only reclaims space.
    """
    batch_size = int(settings.IDEMPOTENCY_PURGE_BATCH_SIZE)
    cutoff = timezone.now()
    purged = 0
    while True:
        batch = list(
            IdempotencyRecord.objects.filter(expires_at__lte=cutoff)
            .order_by("expires_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            break
        deleted, _ = IdempotencyRecord.objects.filter(
            pk__in=batch, expires_at__lte=cutoff
        ).delete()
        purged += deleted
    if purged:
        logger.debug("purged %s expired idempotency records", purged)
    return purged


@shared_task(name="controlplane.purge_spans")
def purge_spans() -> int:
    """Delete stored spans older than SPAN_RETENTION_SECONDS; return how many."""
    purged = spans.purge_old_spans()
    if purged:
        logger.debug(
            "purged %s spans older than %ss",
            purged,
            settings.SPAN_RETENTION_SECONDS,
        )
    return purged


@shared_task(name="controlplane.relay_outbox", acks_late=False)
def relay_outbox() -> int:
    """Publish unsent outbox events, then redeliver unconsumed ones."""
    published, redelivered = outbox.relay()
    if redelivered:
        logger.info("outbox: %s event deliveries sent again", redelivered)
    return published


@shared_task(name="controlplane.purge_outbox")
def purge_outbox() -> int:
    """Delete outbox and inbox rows older than OUTBOX_RETENTION_SECONDS."""
    purged = outbox.purge_old_events()
    if purged:
        logger.debug("purged %s outbox and inbox rows", purged)
    return purged
