"""Leases with fencing tokens on the steps that a worker is executing.

A worker claims a step's action or compensation with a compare-and-set that
raises the step's ``lease_token`` by one and sets ``lease_expires_at``. While
the call runs, a heartbeat thread extends the lease, but only while the
token is still its own. A worker that stalls past its lease (a long GC
pause, a frozen VM) loses the step to the sweeper, which claims it again
with a new token. The stale worker's result is then rejected, because every
result is stored with ``WHERE lease_token = <its token>``.

A step whose worker dies on every claim (a request that crashes the
process) is given up after ``SAGA_MAX_CLAIMS`` claims, so it ends in
compensation rather than in an endless loop of redeliveries.
"""

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from sagas.models import StepRun, StepStatusChange

logger = logging.getLogger(__name__)


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.SAGA_LEASE_SECONDS)


def claim(
    step: StepRun,
    claimable: Q,
    new_status: str,
    counter: str,
    reason: str,
    **fields: Any,
) -> tuple[int | None, str | None]:
    """Claim a step by compare-and-set and return (token, previous status).

    ``claimable`` selects the statuses the claim may start from. ``counter``
    is the claims field to raise (``action_claims`` or
    ``compensation_claims``). Returns ``(None, status)`` when the step has
    already been claimed as often as ``SAGA_MAX_CLAIMS`` allows, and
    ``(None, None)`` when it is not claimable at all.
    """
    now = timezone.now()
    with transaction.atomic():
        row = (
            StepRun.objects.filter(claimable, pk=step.pk)
            .values("status", counter, "lease_token")
            .first()
        )
        if row is None:
            return None, None
        if row[counter] >= settings.SAGA_MAX_CLAIMS:
            return None, str(row["status"])
        changed = (
            StepRun.objects.filter(claimable, pk=step.pk)
            .filter(lease_token=row["lease_token"])
            .update(
                status=new_status,
                lease_token=F("lease_token") + 1,
                lease_expires_at=now + lease_duration(),
                **{counter: F(counter) + 1},
                **fields,
            )
        )
        if changed != 1:
            return None, None
        StepStatusChange.objects.create(
            step=step,
            from_status=row["status"],
            to_status=new_status,
            at=now,
            reason=reason,
        )
    step.refresh_from_db()
    return step.lease_token, str(row["status"])


def expired(status: str) -> Q:
    """Select steps in a status whose lease has passed."""
    return Q(status=status, lease_expires_at__lt=timezone.now())


def live(status: str) -> Q:
    """Select steps in a status whose lease has not passed yet."""
    return Q(status=status, lease_expires_at__gte=timezone.now())


@contextlib.contextmanager
def renewing(step: StepRun, token: int) -> Iterator[None]:
    """Extend the step's lease in the background while the block runs."""
    rows = StepRun.objects.filter(pk=step.pk, lease_token=token)
    label = f"run={step.run_id} step={step.name} token={token}"
    with keep_alive(rows, label):
        yield


@contextlib.contextmanager
def keep_alive(rows: QuerySet[Any], label: str) -> Iterator[None]:
    """Extend the ``lease_expires_at`` of ``rows`` while the block runs.

    ``rows`` filters on the claim's fencing token, so the renewal stops as
    soon as a newer claim took the lease over. ``label`` names the lease in
    log lines.
    """
    stop = threading.Event()
    interval = settings.SAGA_LEASE_SECONDS / 3

    def renew() -> None:
        try:
            while not stop.wait(interval):
                renewed = rows.update(
                    lease_expires_at=timezone.now() + lease_duration()
                )
                if not renewed:
                    logger.warning("%s lease lost to a newer claim", label)
                    return
        except Exception:
            logger.exception("%s lease renewal failed", label)
        finally:
            connection.close()

    thread = threading.Thread(target=renew, name=f"lease {label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
