"""A repeated request with the same Idempotency-Key is applied once."""

import pytest
from rest_framework.test import APIClient

from demo.models import AppliedEffect, IdempotencyKey, Product
from tests.demo.conftest import RESERVATION, SERVICE_CALLS, post, state


@pytest.mark.parametrize("service", list(SERVICE_CALLS))
def test_action_replayed_not_reapplied(client: APIClient, service: str) -> None:
    path, body, _ = SERVICE_CALLS[service]

    first = post(client, path, body, key="run-1:step:action")
    second = post(client, path, body, key="run-1:step:action")

    assert first.status_code == 201, first.content
    assert second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    summary = state(client, service)
    assert summary["effects_applied"] == 1
    assert summary["duplicate_effects"] == 0


def test_reservation_takes_stock_once(client: APIClient) -> None:
    for _ in range(3):
        response = post(client, "/demo/inventory/reservations/", RESERVATION, key="k-1")
        assert response.status_code == 201

    product = Product.objects.get(product_id="sku-1")
    assert product.available == 1000 - 3
    assert product.reserved == 3


def test_compensation_replayed(client: APIClient) -> None:
    post(client, "/demo/inventory/reservations/", RESERVATION, key="action")
    path = "/demo/inventory/reservations/run-1/release/"

    first = post(client, path, key="undo")
    second = post(client, path, key="undo")

    assert first.status_code == 200
    assert second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert AppliedEffect.objects.filter(kind="released").count() == 1


def test_business_failure_replayed(client: APIClient) -> None:
    body = {**RESERVATION, "product_id": "sku-empty"}

    first = post(client, "/demo/inventory/reservations/", body, key="k-empty")
    second = post(client, "/demo/inventory/reservations/", body, key="k-empty")

    assert first.status_code == 409
    assert second.status_code == 409
    assert second["Idempotent-Replayed"] == "true"
    assert second["Content-Type"] == "application/problem+json"
    assert second.json() == first.json()


def test_validation_error_leaves_key_free(client: APIClient) -> None:
    bad = post(
        client, "/demo/inventory/reservations/", {**RESERVATION, "quantity": 0}, "k"
    )
    good = post(client, "/demo/inventory/reservations/", RESERVATION, key="k")

    assert bad.status_code == 400
    assert good.status_code == 201
    assert "Idempotent-Replayed" not in good


def test_keys_scoped_per_service(client: APIClient) -> None:
    order_path, order, _ = SERVICE_CALLS["order"]
    payment_path, payment, _ = SERVICE_CALLS["payment"]

    assert post(client, order_path, order, key="shared").status_code == 201
    assert post(client, payment_path, payment, key="shared").status_code == 201
    assert IdempotencyKey.objects.filter(key="shared").count() == 2


def test_quoted_key_matches_bare_key(client: APIClient) -> None:
    post(client, "/demo/payment/payments/", SERVICE_CALLS["payment"][1], key="k-9")

    replay = post(
        client, "/demo/payment/payments/", SERVICE_CALLS["payment"][1], key='"k-9"'
    )

    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
