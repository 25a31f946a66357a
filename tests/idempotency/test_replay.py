"""A retry with the same key and request gets the stored response."""

from typing import Any

from rest_framework.test import APIClient

from controlplane.models import IdempotencyRecord
from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import start_run


def test_replay_returns_stored_response(
    operator_client: APIClient,
    order_saga: SagaDefinition,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks() as enqueued:
        first = start_run(operator_client, "order-1")
        second = start_run(operator_client, "order-1")

    assert first.status_code == 201, first.content
    assert second.status_code == 201
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"]
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert SagaRun.objects.count() == 1
    assert len(enqueued) == 1


def test_record_completed_with_run(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start_run(operator_client, "order-2")

    record = IdempotencyRecord.objects.get(key="order-2")
    assert record.status == "completed"
    assert record.response_status == 201
    assert str(record.run_id) == response.json()["id"]
    assert record.method == "POST"
    assert record.route == "/api/runs/"
    assert record.response_headers["Content-Type"] == "application/json"
    assert record.expires_at > record.created_at


def test_client_error_is_replayed(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    invalid = {"customer_id": "c-1", "product_id": "sku-1", "quantity": 0}

    first = start_run(operator_client, "order-3", invalid)
    second = start_run(operator_client, "order-3", invalid)

    assert first.status_code == 400
    assert second.status_code == 400
    assert second.content == first.content
    assert second["Content-Type"] == "application/problem+json"
    assert second["Idempotent-Replayed"] == "true"
    assert SagaRun.objects.count() == 0
