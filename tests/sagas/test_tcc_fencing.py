"""The TCC coordinator's lease and decision are compare-and-set rows.

A worker whose lease was taken over cannot store a decision, and a stored
decision never changes. These run in-process against the database only:
no call is sent, because nothing here drives the run.
"""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from sagas import tcc
from sagas.models import SagaDefinition, SagaRun, TccTransaction
from sagas.tcc_definitions import ORDER_TCC

INPUT = {"customer_id": "c-1", "product_id": "sku-1", "quantity": 1, "amount": "1.00"}


@pytest.fixture
def run(db: Any) -> SagaRun:
    definition = SagaDefinition.objects.create(
        name="order-tcc",
        kind=SagaDefinition.Kind.TCC,
        input_schema=ORDER_TCC["input_schema"],
        steps=ORDER_TCC["steps"],
    )
    return tcc.start_transaction(definition, INPUT, None)


def expire_lease(run: SagaRun) -> None:
    TccTransaction.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_live_lease_not_claimable(run: SagaRun) -> None:
    first = tcc.claim(run.pk)

    assert first == 1
    assert tcc.claim(run.pk) is None


def test_released_lease_claimable(run: SagaRun) -> None:
    first = tcc.claim(run.pk)
    assert first is not None
    tcc.release(run.pk, first)

    assert tcc.claim(run.pk) == first + 1


def test_round_not_due_not_claimable(run: SagaRun) -> None:
    first = tcc.claim(run.pk)
    assert first is not None
    tcc.release(run.pk, first, timezone.now() + timedelta(seconds=30))

    assert tcc.claim(run.pk) is None


def test_due_round_claimable_and_cleared(run: SagaRun) -> None:
    first = tcc.claim(run.pk)
    assert first is not None
    tcc.release(run.pk, first, timezone.now() - timedelta(seconds=1))

    assert tcc.claim(run.pk) == first + 1
    assert TccTransaction.objects.get(pk=run.pk).retry_at is None


def test_stale_token_cannot_decide(run: SagaRun) -> None:
    stale = tcc.claim(run.pk)
    assert stale is not None
    expire_lease(run)
    current = tcc.claim(run.pk)

    assert current == stale + 1
    assert tcc.decide(run, stale, "commit", "stale worker") is False
    assert TccTransaction.objects.get(pk=run.pk).decision == ""
    run.refresh_from_db()
    assert run.status == "pending"


def test_decision_stored_once(run: SagaRun) -> None:
    token = tcc.claim(run.pk)
    assert token is not None

    first = tcc.decide(run, token, "abort", "try of payment failed")
    second = tcc.decide(run, token, "commit", "every try succeeded")

    assert first is True
    assert second is False
    record = TccTransaction.objects.get(pk=run.pk)
    assert record.decision == "abort"
    assert record.decided_at is not None
    assert record.phase_two_deadline is not None
    run.refresh_from_db()
    assert run.status == "cancelling"
    cancels = run.phases.filter(phase="cancel").count()
    assert cancels == len(ORDER_TCC["steps"])


def test_start_stores_pending_tries(run: SagaRun) -> None:
    tries = list(run.phases.filter(phase="try").order_by("index"))

    assert [p.participant for p in tries] == ["order", "inventory", "payment"]
    assert all(p.status == "pending" for p in tries)
    assert tries[1].idempotency_key == f"{run.pk}:inventory:try"
