"""Releasing a reservation returns its stock, once."""

from rest_framework.test import APIClient

from tests.demo.conftest import post, state


def stock(client: APIClient, product_id: str) -> dict[str, int]:
    return dict(state(client, "inventory")["products"][product_id])


def test_reserve_moves_stock_to_reserved(client: APIClient) -> None:
    response = post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r-1", "product_id": "sku-3", "quantity": 5},
    )

    assert response.status_code == 201
    assert response.json()["status"] == "reserved"
    assert stock(client, "sku-3") == {
        "on_hand": 1000,
        "reserved": 5,
        "held": 0,
        "available": 995,
    }
    assert state(client, "inventory")["total_reserved"] == 5


def test_release_returns_stock(client: APIClient) -> None:
    post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r-1", "product_id": "sku-3", "quantity": 5},
    )

    response = post(client, "/demo/inventory/reservations/r-1/release/")

    assert response.status_code == 200
    assert response.json()["status"] == "released"
    assert response.json()["compensated_before_action"] is False
    assert stock(client, "sku-3") == {
        "on_hand": 1000,
        "reserved": 0,
        "held": 0,
        "available": 1000,
    }


def test_second_release_changes_nothing(client: APIClient) -> None:
    post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r-1", "product_id": "sku-3", "quantity": 5},
    )
    post(client, "/demo/inventory/reservations/r-1/release/", key="first")

    again = post(client, "/demo/inventory/reservations/r-1/release/", key="second")

    assert again.status_code == 200
    assert again.json()["status"] == "released"
    assert stock(client, "sku-3")["available"] == 1000
    summary = state(client, "inventory")
    assert summary["effects_applied"] == 2
    assert summary["duplicate_effects"] == 0


def test_reservation_readable_by_reference(client: APIClient) -> None:
    post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r-1", "product_id": "sku-3", "quantity": 5},
    )

    response = client.get("/demo/inventory/reservations/r-1/")

    assert response.status_code == 200
    assert response.json()["quantity"] == 5
