"""The same key with a different request is rejected with 422."""

from rest_framework.test import APIClient

from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import ORDER_INPUT, start_run


def test_different_body_gets_422(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    start_run(operator_client, "order-1")

    response = start_run(operator_client, "order-1", {**ORDER_INPUT, "quantity": 3})

    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "idempotency_key_reused"
    assert body["status"] == 422
    assert "order-1" in body["detail"]
    assert SagaRun.objects.count() == 1


def test_key_order_in_body_is_same_request(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    reordered = dict(reversed(list(ORDER_INPUT.items())))

    first = start_run(operator_client, "order-2")
    second = start_run(operator_client, "order-2", reordered)

    assert first.status_code == 201
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert SagaRun.objects.count() == 1
