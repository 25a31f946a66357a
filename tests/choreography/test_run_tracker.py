"""The run tracker moves a choreographed run by its events, once each.

These tests call the tracker and the deadline directly on the test
database; only the clock passed to the deadline is faked.
"""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from controlplane.models import InboxEvent
from controlplane.seed import seed
from sagas import actions, choreography
from sagas.models import RunStatus, SagaDefinition, SagaRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(db: Any) -> SagaRun:
    seed("http://127.0.0.1:9")
    definition = SagaDefinition.objects.get(name="order-choreography")
    return SagaRun.objects.create(definition=definition, input={})


def message(run: SagaRun, event_type: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "service": "order",
        "correlation_id": str(run.pk),
        "payload": payload,
        "occurred_at": timezone.now().isoformat(),
        "traceparent": "",
    }


def history(run: SagaRun) -> list[str]:
    return list(run.status_changes.values_list("to_status", flat=True))


def test_failure_then_cancel_compensates(run: SagaRun) -> None:
    choreography.record_event(message(run, "OrderCreated"))
    choreography.record_event(message(run, "PaymentFailed", reason="declined"))
    choreography.record_event(message(run, "OrderCancelled"))

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert run.error == "declined"
    assert history(run) == ["running", "compensating", "compensated"]
    assert run.events.count() == 3


def test_duplicate_event_recorded_once(run: SagaRun) -> None:
    created = message(run, "OrderCreated")

    choreography.record_event(created)
    choreography.record_event(created)

    assert run.events.count() == 1
    inbox = InboxEvent.objects.get(consumer="sagas", event_id=created["event_id"])
    assert inbox.duplicates == 1
    assert history(run) == ["running"]


def test_late_event_never_moves_back(run: SagaRun) -> None:
    choreography.record_event(message(run, "OrderConfirmed"))
    choreography.record_event(message(run, "PaymentFailed", reason="late"))

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert history(run) == ["running", "completed", "completed"]
    assert run.events.count() == 2


def test_contradicting_late_event_flags_run(run: SagaRun) -> None:
    choreography.record_event(message(run, "OrderConfirmed"))
    choreography.record_event(message(run, "OrderCancelled"))

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.needs_attention is True
    last = run.status_changes.order_by("at", "id").last()
    assert last is not None
    assert last.reason == (
        "OrderCancelled from order arrived after the run was completed; "
        "check the services"
    )


def test_agreeing_late_event_only_recorded(run: SagaRun) -> None:
    choreography.record_event(message(run, "OrderConfirmed"))
    choreography.record_event(message(run, "OrderCreated"))

    run.refresh_from_db()
    assert run.needs_attention is False
    assert history(run) == ["running", "completed"]


def test_event_for_unknown_run_ignored(run: SagaRun) -> None:
    stray = message(run, "OrderCreated")
    stray["correlation_id"] = "not-a-run"

    choreography.record_event(stray)

    assert run.events.count() == 0
    assert InboxEvent.objects.filter(event_id=stray["event_id"]).exists()


def test_deadline_ends_overdue_run(run: SagaRun) -> None:
    choreography.record_event(message(run, "OrderCreated"))
    deadline = timedelta(seconds=settings.CHOREOGRAPHY_RUN_DEADLINE_SECONDS)

    assert choreography.expire_overdue_runs(run.created_at + deadline) == 0
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING

    later = run.created_at + deadline + timedelta(seconds=1)
    assert choreography.expire_overdue_runs(later) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATION_FAILED
    assert run.needs_attention is True
    assert "deadline" in run.error
    assert run.finished_at == later


def test_deadline_skips_orchestrated_runs(run: SagaRun) -> None:
    definition = SagaDefinition.objects.get(name="order")
    orchestrated = SagaRun.objects.create(definition=definition, input={})
    later = timezone.now() + timedelta(days=1)

    choreography.expire_overdue_runs(later)

    orchestrated.refresh_from_db()
    assert orchestrated.status == RunStatus.PENDING


def test_flagged_completed_run_can_be_resolved(run: SagaRun) -> None:
    choreography.record_event(message(run, "OrderConfirmed"))
    choreography.record_event(message(run, "OrderCancelled"))
    run.refresh_from_db()

    actions.resolve(run, None, "order re-placed by hand")

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.needs_attention is False
    assert run.resolution_note == "order re-placed by hand"
