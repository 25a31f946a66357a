"""Invalid input gets 400 naming the field, the rule and the bad value."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from demo.models import AppliedEffect, IdempotencyKey
from tests.demo.conftest import ORDER, RESERVATION, post

CASES = [
    # path, field, bad value, expected rule code
    ("/demo/order/orders/", "quantity", 0, "min_value"),
    ("/demo/order/orders/", "quantity", "two", "invalid"),
    ("/demo/order/orders/", "amount", "0.00", "min_value"),
    ("/demo/order/orders/", "amount", "-5", "min_value"),
    ("/demo/order/orders/", "amount", "1.234", "max_decimal_places"),
    ("/demo/order/orders/", "amount", "ten", "invalid"),
    ("/demo/order/orders/", "reference", "r" * 65, "max_length"),
    ("/demo/order/orders/", "reference", "", "blank"),
    ("/demo/order/orders/", "reference", "a/b", "invalid_reference"),
    ("/demo/order/orders/", "customer_id", "c" * 65, "max_length"),
    ("/demo/inventory/reservations/", "quantity", -1, "min_value"),
    ("/demo/payment/payments/", "amount", "12.345", "max_decimal_places"),
    ("/demo/shipping/shipments/", "quantity", 0, "min_value"),
]

BODIES: dict[str, dict[str, Any]] = {
    "/demo/order/orders/": ORDER,
    "/demo/inventory/reservations/": RESERVATION,
    "/demo/payment/payments/": {
        "reference": "run-1",
        "customer_id": "c-1",
        "amount": "1.00",
    },
    "/demo/shipping/shipments/": {
        "reference": "run-1",
        "customer_id": "c-1",
        "product_id": "sku-1",
        "quantity": 1,
    },
}


@pytest.mark.parametrize(("path", "field", "value", "rule"), CASES)
def test_invalid_field_400(
    client: APIClient, path: str, field: str, value: Any, rule: str
) -> None:
    response = post(client, path, {**BODIES[path], field: value}, key="k-1")

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "invalid"
    assert body["status"] == 400
    assert field in body["detail"]
    error = body["errors"][0]
    assert error["field"] == field
    assert error["code"] == rule
    assert error["value"] == value
    assert error["message"]
    assert not AppliedEffect.objects.exists()
    assert not IdempotencyKey.objects.exists()


def test_missing_field_named(client: APIClient) -> None:
    body = {key: value for key, value in ORDER.items() if key != "amount"}

    response = post(client, "/demo/order/orders/", body)

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "amount"
    assert error["code"] == "required"


def test_reference_in_path_checked(client: APIClient) -> None:
    response = post(client, f"/demo/payment/payments/{'r' * 65}/refund/")

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "reference"
    assert error["code"] == "max_length"


def test_body_not_object_400(client: APIClient) -> None:
    response = post(client, "/demo/order/orders/", [ORDER])

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_malformed_json_400(client: APIClient) -> None:
    response = client.post(
        "/demo/order/orders/", "{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
