"""The per-process heartbeat extends the leases of the steps it runs."""

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from sagas import leases
from sagas.models import SagaDefinition, SagaRun, StepRun, StepStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def step(settings: Any) -> StepRun:
    settings.SAGA_LEASE_SECONDS = 0.3  # a pass every 0.1 s
    definition = SagaDefinition.objects.create(name="beat", steps=[])
    run = SagaRun.objects.create(definition=definition)
    soon = timezone.now() + timedelta(seconds=0.3)
    return StepRun.objects.create(
        run=run,
        index=0,
        name="a",
        status=StepStatus.RUNNING,
        lease_token=4,
        lease_expires_at=soon,
    )


def lease_of(step: StepRun) -> Any:
    return StepRun.objects.values_list("lease_expires_at", flat=True).get(pk=step.pk)


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_lease_is_extended_while_held_and_not_after(step: StepRun) -> None:
    first = lease_of(step)
    with leases.renewing(step, 4):
        assert eventually(lambda: lease_of(step) > first)
    # A wake-up time written after the block ends is never overwritten.
    parked = timezone.now() + timedelta(hours=1)
    StepRun.objects.filter(pk=step.pk).update(lease_expires_at=parked)
    time.sleep(0.5)
    assert lease_of(step) == parked


def test_newer_claim_stops_renewal(
    step: StepRun, caplog: pytest.LogCaptureFixture
) -> None:
    with leases.renewing(step, 4):
        StepRun.objects.filter(pk=step.pk).update(lease_token=5)
        assert eventually(lambda: "lease lost to a newer claim" in caplog.text)
        after_loss = lease_of(step)
        time.sleep(0.4)
        assert lease_of(step) == after_loss
