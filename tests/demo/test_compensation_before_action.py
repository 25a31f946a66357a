"""A compensation for an unseen reference is stored and blocks the action."""

import pytest
from rest_framework.test import APIClient

from demo.models import Product
from tests.demo.conftest import SERVICE_CALLS, post, state

FINAL_STATUS = {
    "order": "cancelled",
    "inventory": "released",
    "payment": "refunded",
    "shipping": "cancelled",
}


@pytest.mark.parametrize("service", list(SERVICE_CALLS))
def test_compensation_first_succeeds(client: APIClient, service: str) -> None:
    _, _, undo_path = SERVICE_CALLS[service]

    response = post(client, undo_path, key="run-1:step:compensation")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == FINAL_STATUS[service]
    assert response.json()["compensated_before_action"] is True
    assert state(client, service)["compensated_before_action"] == 1


@pytest.mark.parametrize("service", list(SERVICE_CALLS))
def test_late_action_rejected(client: APIClient, service: str) -> None:
    action_path, body, undo_path = SERVICE_CALLS[service]
    post(client, undo_path, key="run-1:step:compensation")

    response = post(client, action_path, body, key="run-1:step:action")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "already_compensated"
    assert "run-1" in response.json()["detail"]
    summary = state(client, service)
    assert summary["by_status"][FINAL_STATUS[service]] == 1
    assert summary["total"] == 1
    assert summary["effects_applied"] == 1


def test_late_reservation_takes_no_stock(client: APIClient) -> None:
    _, body, undo_path = SERVICE_CALLS["inventory"]
    post(client, undo_path)

    post(client, "/demo/inventory/reservations/", body)

    product = Product.objects.get(product_id="sku-1")
    assert product.available == 1000
    assert product.reserved == 0


def test_late_charge_takes_no_money(client: APIClient) -> None:
    _, body, undo_path = SERVICE_CALLS["payment"]
    post(client, undo_path)

    post(client, "/demo/payment/payments/", body)

    summary = state(client, "payment")
    assert summary["charged_total"] == "0.00"
    assert summary["refunded_total"] == "0.00"
