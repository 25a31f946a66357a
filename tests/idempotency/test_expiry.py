"""Expired records are purged in batches, and their keys are reusable."""

from datetime import timedelta

from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from controlplane.models import IdempotencyRecord
from controlplane.tasks import purge_idempotency_records
from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import make_record, start_run


def expire(key: str) -> None:
    past = timezone.now() - timedelta(seconds=1)
    IdempotencyRecord.objects.filter(key=key).update(expires_at=past)


def test_purge_deletes_expired_in_batches(operator: User, settings: Settings) -> None:
    settings.IDEMPOTENCY_PURGE_BATCH_SIZE = 2
    past = timezone.now() - timedelta(minutes=1)
    for number in range(5):
        make_record(operator, f"old-{number}", status="completed", expires_at=past)
    make_record(operator, "fresh", status="completed")

    with CaptureQueriesContext(connection) as queries:
        purged = purge_idempotency_records()

    assert purged == 5
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]
    deletes = [q for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3


def test_purged_key_executes_again(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    start_run(operator_client, "order-1")
    expire("order-1")

    purge_idempotency_records()
    response = start_run(operator_client, "order-1")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert SagaRun.objects.count() == 2


def test_expired_key_reusable_before_purge(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    start_run(operator_client, "order-1")
    expire("order-1")

    other = {"customer_id": "c-2", "product_id": "sku-9", "quantity": 1}
    response = start_run(operator_client, "order-1", {**other, "amount": "5.00"})

    assert response.status_code == 201, response.content
    assert SagaRun.objects.count() == 2
    record = IdempotencyRecord.objects.get(key="order-1")
    assert str(record.run_id) == response.json()["id"]
    assert record.expires_at > timezone.now()
