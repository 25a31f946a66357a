"""A reservation beyond the available stock fails with 409 and takes nothing."""

from rest_framework.test import APIClient

from demo.models import Product, Reservation
from tests.demo.conftest import post


def test_empty_product_409(client: APIClient) -> None:
    response = post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r-1", "product_id": "sku-empty", "quantity": 1},
    )

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "insufficient_stock"
    assert body["status"] == 409
    assert "'sku-empty' has 0 units available" in body["detail"]
    assert response["Content-Type"] == "application/problem+json"
    assert not Reservation.objects.exists()


def test_more_than_available_409(client: APIClient) -> None:
    response = post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r-1", "product_id": "sku-1", "quantity": 1001},
    )

    assert response.status_code == 409
    product = Product.objects.get(product_id="sku-1")
    assert product.available == 1000
    assert product.reserved == 0


def test_failed_reservation_frees_reference(client: APIClient) -> None:
    body = {"reference": "r-1", "product_id": "sku-1", "quantity": 1001}
    post(client, "/demo/inventory/reservations/", body)

    retry = post(client, "/demo/inventory/reservations/", {**body, "quantity": 1})

    assert retry.status_code == 201


def test_unknown_product_422(client: APIClient) -> None:
    response = post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r-1", "product_id": "sku-404", "quantity": 1},
    )

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "product_id"
    assert error["code"] == "does_not_exist"
    assert error["value"] == "sku-404"
