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
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from sagas import statements
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
    ready: str | None = None,
    **fields: Any,
) -> tuple[int | None, str | None]:
    """Claim a step by compare-and-set and return (token, previous status).

    ``claimable`` selects the statuses the claim may start from; ``ready``
    may name one of them that needs no further condition (``pending`` for
    an action). ``counter`` is the claims field to raise (``action_claims``
    or ``compensation_claims``). Returns ``(None, status)`` when the step
    has already been claimed as often as ``SAGA_MAX_CLAIMS`` allows, and
    ``(None, None)`` when it is not claimable at all.

    The first try assumes the step is still as the caller loaded it: one
    UPDATE on that status and token, with no read before or after. Only
    when it changes no row is the step read again, to try once more or to
    tell why not. From the ``ready`` status that UPDATE is built without
    the ORM, as it is on every step of a run.
    """
    now = timezone.now()
    expires = now + lease_duration()
    limit = {f"{counter}__lt": settings.SAGA_MAX_CLAIMS}

    def update(status: str, token: int) -> bool:
        if status == ready:
            changes = {
                "status": new_status,
                "lease_token": statements.Add(1),
                "lease_expires_at": expires,
                counter: statements.Add(1),
                **fields,
            }
            filters = {"pk": step.pk, "status": status, "lease_token": token}
            return statements.update(StepRun, {**filters, **limit}, changes) == 1
        rows = StepRun.objects.filter(
            claimable, Q(**limit), pk=step.pk, status=status, lease_token=token
        )
        return (
            rows.update(
                status=new_status,
                lease_token=F("lease_token") + 1,
                lease_expires_at=expires,
                **{counter: F(counter) + 1},
                **fields,
            )
            == 1
        )

    with transaction.atomic(savepoint=False):
        previous = str(step.status)
        if not update(previous, step.lease_token):
            step.refresh_from_db()
            previous = str(step.status)
            if not StepRun.objects.filter(claimable, pk=step.pk).exists():
                return None, None
            if getattr(step, counter) >= settings.SAGA_MAX_CLAIMS:
                return None, previous
            if not update(previous, step.lease_token):
                return None, None
        statements.insert(
            [
                StepStatusChange(
                    step_id=step.pk,
                    from_status=previous,
                    to_status=new_status,
                    at=now,
                    reason=reason,
                )
            ]
        )
    # Match the instance to what the UPDATE wrote to the row.
    step.status = new_status
    step.lease_token += 1
    step.lease_expires_at = expires
    setattr(step, counter, getattr(step, counter) + 1)
    for name, value in fields.items():
        setattr(step, name, value)
    return step.lease_token, previous


def expired(status: str) -> Q:
    """Select steps in a status whose lease has passed."""
    return Q(status=status, lease_expires_at__lt=timezone.now())


def live(status: str) -> Q:
    """Select steps in a status whose lease has not passed yet."""
    return Q(status=status, lease_expires_at__gte=timezone.now())


class _Heartbeat:
    """One thread per process that extends the leases the process holds.

    A thread per claim would cost a thread start on every step, a large
    share of a quick step's time. Each held lease is a queryset that
    filters on its claim's fencing token, so a renewal that changes no row
    means a newer claim took the lease over. The lock is held for a whole
    pass, so once ``release`` returns no pass renews that lease any more:
    a step parked with a lease that ends at its wake-up time keeps it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, QuerySet[Any]] = {}
        self.pid: int | None = None

    def hold(self, label: str, rows: QuerySet[Any]) -> None:
        with self.lock:
            if self.pid != os.getpid():
                # First use in this process, or a fork's child: the parent's
                # thread did not come along.
                self.pid = os.getpid()
                self.held.clear()
                thread = threading.Thread(
                    target=self._run, name="lease-heartbeat", daemon=True
                )
                thread.start()
            self.held[label] = rows

    def release(self, label: str) -> None:
        with self.lock:
            self.held.pop(label, None)

    def _run(self) -> None:
        while True:
            time.sleep(settings.SAGA_LEASE_SECONDS / 3)
            with self.lock:
                try:
                    self._renew_all()
                except Exception:
                    logger.exception("lease renewal failed")
                    connection.close()

    def _renew_all(self) -> None:
        for label, rows in list(self.held.items()):
            renewed = rows.update(lease_expires_at=timezone.now() + lease_duration())
            if not renewed:
                del self.held[label]
                logger.warning("%s lease lost to a newer claim", label)


_heartbeat = _Heartbeat()


@contextlib.contextmanager
def renewing(step: StepRun, token: int) -> Iterator[None]:
    """Extend the step's lease in the background while the block runs."""
    rows = StepRun.objects.filter(pk=step.pk, lease_token=token)
    with keep_alive(rows, f"run={step.run_id} step={step.name} token={token}"):
        yield


@contextlib.contextmanager
def keep_alive(rows: QuerySet[Any], label: str) -> Iterator[None]:
    """Extend the ``lease_expires_at`` of ``rows`` while the block runs.

    ``rows`` filters on the claim's fencing token, so the renewal stops as
    soon as a newer claim took the lease over. ``label`` names the lease in
    log lines and must be unique to the claim.
    """
    _heartbeat.hold(label, rows)
    try:
        yield
    finally:
        _heartbeat.release(label)
