"""The demo services' Try-Confirm-Cancel endpoints keep the participant rules.

Confirm and cancel are idempotent, a cancel before its try is remembered
and a try that arrives after its cancel is rejected with 409.
"""

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.demo.conftest import ORDER, PAYMENT, post, state

TRIES: dict[str, tuple[str, dict[str, Any]]] = {
    "order": ("/demo/order/tcc/try/", ORDER),
    "inventory": (
        "/demo/inventory/tcc/try/",
        {"reference": "run-1", "product_id": "sku-1", "quantity": 3},
    ),
    "payment": ("/demo/payment/tcc/try/", PAYMENT),
}


def product(client: APIClient, product_id: str = "sku-1") -> dict[str, Any]:
    return dict(state(client, "inventory")["products"][product_id])


@pytest.mark.parametrize("service", list(TRIES))
def test_cancel_without_try_succeeds(client: APIClient, service: str) -> None:
    response = post(client, f"/demo/{service}/tcc/run-1/cancel/", key="k-cancel")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    assert response.json()["cancelled_before_try"] is True
    assert state(client, service)["tcc_cancelled_before_try"] == 1


@pytest.mark.parametrize("service", list(TRIES))
def test_late_try_after_cancel_rejected(client: APIClient, service: str) -> None:
    path, body = TRIES[service]
    post(client, f"/demo/{service}/tcc/run-1/cancel/", key="k-cancel")

    response = post(client, path, body, key="k-try")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "cancelled_before_try"
    assert "run-1" in response.json()["detail"]
    assert state(client, service)["tcc_branches"]["tried"] == 0


def test_inventory_try_holds_and_confirm_deducts(client: APIClient) -> None:
    before = product(client)
    path, body = TRIES["inventory"]

    tried = post(client, path, body, key="k-try")
    held = product(client)
    confirmed = post(client, "/demo/inventory/tcc/run-1/confirm/", key="k-confirm")
    after = product(client)

    assert tried.status_code == 201, tried.content
    assert held["held"] == before["held"] + 3
    assert held["available"] == before["available"] - 3
    assert confirmed.status_code == 200, confirmed.content
    assert after["held"] == before["held"]
    assert after["available"] == before["available"] - 3
    assert after["on_hand"] == before["on_hand"] - 3


def test_inventory_cancel_releases_hold(client: APIClient) -> None:
    before = product(client)
    path, body = TRIES["inventory"]
    post(client, path, body, key="k-try")

    response = post(client, "/demo/inventory/tcc/run-1/cancel/", key="k-cancel")

    assert response.status_code == 200, response.content
    assert product(client) == before


@pytest.mark.parametrize("phase", ["confirm", "cancel"])
def test_phase_two_is_idempotent(client: APIClient, phase: str) -> None:
    path, body = TRIES["payment"]
    post(client, path, body, key="k-try")

    first = post(client, f"/demo/payment/tcc/run-1/{phase}/", key="k-1")
    # Another key, so the service's key store cannot replay it: the branch
    # itself must see that the phase already happened.
    second = post(client, f"/demo/payment/tcc/run-1/{phase}/", key="k-2")

    assert first.status_code == 200, first.content
    assert second.status_code == 200, second.content
    summary = state(client, "payment")
    assert summary["duplicate_effects"] == 0
    assert summary["authorised_total"] == "0.00"


def test_payment_totals_follow_phases(client: APIClient) -> None:
    path, body = TRIES["payment"]
    post(client, path, body, key="k-try")
    authorised = state(client, "payment")["authorised_total"]

    post(client, "/demo/payment/tcc/run-1/confirm/", key="k-confirm")
    summary = state(client, "payment")

    assert authorised == "25.50"
    assert summary["authorised_total"] == "0.00"
    assert summary["captured_total"] == "25.50"


def test_confirm_after_cancel_rejected(client: APIClient) -> None:
    path, body = TRIES["order"]
    post(client, path, body, key="k-try")
    post(client, "/demo/order/tcc/run-1/cancel/", key="k-cancel")

    response = post(client, "/demo/order/tcc/run-1/confirm/", key="k-confirm")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "already_cancelled"
    order = client.get("/demo/order/orders/run-1/").json()
    assert order["status"] == "cancelled"


def test_try_body_validated(client: APIClient) -> None:
    response = post(
        client,
        "/demo/inventory/tcc/try/",
        {"reference": "run-1", "product_id": "sku-1", "quantity": 0},
        key="k-try",
    )

    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert error["field"] == "quantity"
    assert error["value"] == 0


@pytest.mark.parametrize("service", sorted(TRIES))
def test_try_with_unknown_field_rejected(client: APIClient, service: str) -> None:
    path, body = TRIES[service]

    response = post(client, path, {**body, "evil": 1}, key="k-evil")

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "evil"
    assert error["code"] == "unknown_field"
    assert state(client, service)["tcc_branches"]["tried"] == 0
