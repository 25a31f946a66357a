"""A claim in flight gets 409; one whose lease passed can be claimed."""

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.models import IdempotencyRecord
from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import make_record, order_fingerprint, start_run


def test_in_flight_key_gets_409(
    operator: User, operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    make_record(operator, "order-1", fingerprint=order_fingerprint())

    response = start_run(operator_client, "order-1")

    assert response.status_code == 409
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "idempotency_key_in_use"
    assert SagaRun.objects.count() == 0


def test_crashed_claim_is_claimable(
    operator: User, operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    past = timezone.now() - timedelta(seconds=1)
    crashed = make_record(operator, "order-1", locked_until=past)

    response = start_run(operator_client, "order-1")

    assert response.status_code == 201, response.content
    assert SagaRun.objects.count() == 1
    record = IdempotencyRecord.objects.get(pk=crashed.pk)
    assert record.status == "completed"
    assert record.claim_token != crashed.claim_token
    assert record.fingerprint != crashed.fingerprint


def test_completed_record_is_unlocked(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    before = timezone.now()

    start_run(operator_client, "order-1")

    record = IdempotencyRecord.objects.get()
    assert before <= record.locked_until <= timezone.now()
    assert record.expires_at >= before + timedelta(hours=24)
