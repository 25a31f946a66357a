"""Choreographed runs: started by one HTTP call, assembled from events.

A choreographed saga has no coordinator. ``start_run`` stores the run,
and a worker places the order with the order service over HTTP, through
the resilience core, with a stable ``Idempotency-Key``. From there the
demo services react to each other's events (``demo.events``). The control
plane's run tracker subscribes to every event: it stores the events that
carry the run id as their correlation id and moves the run by them, with
the same compare-and-set transitions as orchestrated runs:

- OrderCreated: pending to running;
- InventoryReservationFailed, PaymentFailed, ShipmentFailed: to
  compensating;
- OrderConfirmed: to completed;
- OrderCancelled: to compensated (through compensating).

A run still pending after the sweeper's ``PENDING_RESUME_AFTER`` gets its
order placed again, with the same key. A run still pending, running or
compensating after ``CHOREOGRAPHY_RUN_DEADLINE_SECONDS`` ends
``compensation_failed`` with ``needs_attention``, because the control
plane cannot tell whether the services still store its effects.
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controlplane import outbox, tracing
from controlplane.idempotency import record_downstream_key
from demo import events
from resilience.models import Target
from resilience.services import HttpOutcome, http_call
from sagas.models import (
    TERMINAL_RUN_STATUSES,
    RunEvent,
    RunStatus,
    RunStatusChange,
    SagaDefinition,
    SagaRun,
)
from sagas.services import failure_reason, transition_run

logger = logging.getLogger(__name__)

ORDER_TARGET = "order"
CHECKOUT_PATH = "/checkouts/"
# Seconds between two tries to place the order while the order service
# fails; the run's deadline ends them.
START_RETRY_SECONDS = 2.0

# Status paths each event moves a run along. Every hop is a compare-and-set
# from its own starting status, so a run never goes back.
_TO_RUNNING = [(RunStatus.PENDING, RunStatus.RUNNING)]
_TO_COMPENSATING = [*_TO_RUNNING, (RunStatus.RUNNING, RunStatus.COMPENSATING)]
PATHS = {
    events.ORDER_CREATED: _TO_RUNNING,
    events.INVENTORY_RESERVATION_FAILED: _TO_COMPENSATING,
    events.PAYMENT_FAILED: _TO_COMPENSATING,
    events.SHIPMENT_FAILED: _TO_COMPENSATING,
    events.ORDER_CONFIRMED: [*_TO_RUNNING, (RunStatus.RUNNING, RunStatus.COMPLETED)],
    events.ORDER_CANCELLED: [
        *_TO_COMPENSATING,
        (RunStatus.COMPENSATING, RunStatus.COMPENSATED),
    ],
}
FINISHING = {RunStatus.COMPLETED, RunStatus.COMPENSATED}


class StartPending(Exception):
    """Placing the order failed with an unknown outcome; try again later."""


def start_run(
    definition: SagaDefinition, cleaned: dict[str, Any], user: Any
) -> SagaRun:
    """Store a pending choreographed run and ask a worker to place its order."""
    with tracing.run_span(definition.name) as trace_fields, transaction.atomic():
        run = SagaRun.objects.create(
            definition=definition,
            steps_snapshot=[],
            input=cleaned,
            created_by=user if user is not None and user.is_authenticated else None,
            **trace_fields,
        )
        tracing.set_span_run_id(run.pk)
        RunStatusChange.objects.create(
            run=run,
            from_status="",
            to_status=RunStatus.PENDING,
            at=timezone.now(),
            reason="run created",
        )
        transaction.on_commit(lambda: enqueue_start(run.pk))
    logger.info("run=%s saga=%s started (choreography)", run.pk, definition.name)
    return run


def enqueue_start(run_id: Any) -> None:
    from sagas import tasks

    tasks.start_choreographed_run.delay(str(run_id))


def place_order(run_id: Any) -> None:
    """Send the run's order to the order service; raise StartPending to retry.

    A 2xx starts the choreography: the order service publishes
    OrderCreated in the transaction that created the order. A 4xx is a
    definite refusal that created nothing, so the run ends compensated.
    Anything else may or may not have created the order, so the same
    request (same key) is sent again until the run's deadline.
    """
    run = SagaRun.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.PENDING:
        return
    target = Target.objects.filter(name=ORDER_TARGET).first()
    if target is None:
        _refuse(run, f"Target {ORDER_TARGET!r} is not registered.")
        return

    key = f"{run.pk}:place_order:action"
    attributes = {"saga.run_id": str(run.pk), "saga.step": "place_order"}
    with tracing.tracer().start_as_current_span(
        "saga.step place_order",
        context=tracing.run_context(run.traceparent),
        attributes=attributes,
    ):
        sent_at = timezone.now()
        outcome = http_call(
            target,
            "POST",
            CHECKOUT_PATH,
            {"reference": str(run.pk), **run.input},
            {"Idempotency-Key": key, "X-Saga-Run": str(run.pk)},
        )
    record_downstream_key(
        run.pk, "place_order", "action", target.name, key, outcome.status_code, sent_at
    )
    _settle_start(run, outcome)


def _settle_start(run: SagaRun, outcome: HttpOutcome) -> None:
    if outcome.outcome == "succeeded":
        transition_run(
            run.pk,
            [RunStatus.PENDING],
            RunStatus.RUNNING,
            "order placed with the order service",
            started_at=timezone.now(),
        )
        return
    status = outcome.status_code
    if status is not None and 400 <= status < 500 and not outcome.outcome_unknown:
        _refuse(run, failure_reason(outcome))
        return
    raise StartPending(failure_reason(outcome))


def _refuse(run: SagaRun, reason: str) -> None:
    reason = f"order not placed: {reason}"[:4000]
    logger.warning("run=%s %s", run.pk, reason)
    now = timezone.now()
    transition_run(run.pk, [RunStatus.PENDING], RunStatus.RUNNING, reason)
    transition_run(
        run.pk, [RunStatus.RUNNING], RunStatus.COMPENSATING, reason, error=reason
    )
    transition_run(
        run.pk,
        [RunStatus.COMPENSATING],
        RunStatus.COMPENSATED,
        "nothing took effect",
        finished_at=now,
    )


def record_event(message: dict[str, Any]) -> None:
    """Store an event on its run and move the run by it, once per event."""
    run_id = _run_id(message["correlation_id"])
    with transaction.atomic():
        if not outbox.claim_inbox(events.TRACKER, message):
            return
        run = SagaRun.objects.filter(pk=run_id).first() if run_id else None
        if run is None:
            logger.warning(
                "event=%s %s names no run: %s",
                message["event_id"],
                message["event_type"],
                message["correlation_id"],
            )
            return
        RunEvent.objects.create(
            run=run,
            event_id=message["event_id"],
            event_type=message["event_type"],
            service=message["service"],
            payload=message["payload"],
            traceparent=message.get("traceparent", ""),
            occurred_at=datetime.fromisoformat(message["occurred_at"]),
        )
        _advance(run, message)


def _advance(run: SagaRun, message: dict[str, Any]) -> None:
    reason = f"{message['event_type']} from {message['service']}"
    error = message["payload"].get("reason") or ""
    if run.status in TERMINAL_RUN_STATUSES:
        if _contradicts(run.status, message["event_type"]):
            _flag_late_event(run, reason)
        else:
            logger.info("run=%s is %s; %s only recorded", run.pk, run.status, reason)
        return
    for expected, new in PATHS.get(message["event_type"], []):
        fields: dict[str, Any] = {}
        if new == RunStatus.RUNNING:
            fields["started_at"] = timezone.now()
        if new == RunStatus.COMPENSATING and error:
            fields["error"] = str(error)[:4000]
        if new in FINISHING:
            fields["finished_at"] = timezone.now()
        transition_run(run.pk, [expected], new, reason, **fields)


def _contradicts(status: str, event_type: str) -> bool:
    """Say whether an event would have led a finished run elsewhere.

    A failure or a cancel after ``completed``, or a confirmation after
    ``compensated``, means the services and the run disagree: an event
    was late past the run's deadline, or a service acted twice.
    """
    leads_to = {new for _, new in PATHS.get(event_type, [])}
    if status == RunStatus.COMPLETED:
        return RunStatus.COMPENSATING in leads_to
    if status == RunStatus.COMPENSATED:
        return RunStatus.COMPLETED in leads_to
    return False


def _flag_late_event(run: SagaRun, reason: str) -> None:
    """Keep the run's status, flag it for an operator and say why."""
    now = timezone.now()
    note = f"{reason} arrived after the run was {run.status}; check the services"
    SagaRun.objects.filter(pk=run.pk).update(needs_attention=True, updated_at=now)
    RunStatusChange.objects.create(
        run_id=run.pk, from_status=run.status, to_status=run.status, at=now, reason=note
    )
    logger.warning("run=%s %s", run.pk, note)


def _run_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


def resume_pending_runs(now: datetime | None = None) -> int:
    """Ask again to place the order of runs pending for ``PENDING_RESUME_AFTER``.

    A worker killed while placing an order keeps its message unacknowledged
    until the broker's visibility timeout (an hour). Sending the request
    again is safe because it carries the same ``Idempotency-Key``.
    """
    from sagas.sweeper import PENDING_RESUME_AFTER, first_resume

    now = now or timezone.now()
    pending = SagaRun.objects.filter(
        definition__kind=SagaDefinition.Kind.CHOREOGRAPHY,
        status=RunStatus.PENDING,
        created_at__lt=now - PENDING_RESUME_AFTER,
    ).values_list("pk", flat=True)
    resumed = 0
    for run_id in pending:
        if first_resume(run_id):
            logger.warning("run=%s still pending; placing its order again", run_id)
            enqueue_start(run_id)
            resumed += 1
    return resumed


def expire_overdue_runs(now: datetime | None = None) -> int:
    """End choreographed runs that passed their deadline; return how many."""
    now = now or timezone.now()
    deadline = timedelta(seconds=settings.CHOREOGRAPHY_RUN_DEADLINE_SECONDS)
    overdue = SagaRun.objects.filter(
        definition__kind=SagaDefinition.Kind.CHOREOGRAPHY,
        status__in=[RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPENSATING],
        created_at__lt=now - deadline,
    ).values_list("pk", "status")
    expired = 0
    for run_id, status in overdue:
        reason = (
            f"no final event within the deadline of {deadline.total_seconds():g} s "
            f"while {status}; check the services' state and resolve the run"
        )
        moved = transition_run(
            run_id,
            [status],
            RunStatus.COMPENSATION_FAILED,
            reason,
            error=reason,
            finished_at=now,
            needs_attention=True,
        )
        if moved:
            logger.warning("run=%s %s", run_id, reason)
            expired += 1
    return expired
