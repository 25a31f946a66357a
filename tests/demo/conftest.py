"""Fixtures of the demo service tests: seeded stock, clients and roles."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from demo import faults
from demo.services import seed_demo_data


def post(client: APIClient, path: str, body: Any = None, key: str | None = None) -> Any:
    """POST ``body`` as JSON to a demo path, with an Idempotency-Key if given."""
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(path, body, format="json", headers=headers)


def state(client: APIClient, service: str) -> dict[str, Any]:
    response = client.get(f"/demo/{service}/state/")
    assert response.status_code == 200, response.content
    return dict(response.json())


ORDER = {
    "reference": "run-1",
    "customer_id": "customer-1",
    "product_id": "sku-1",
    "quantity": 2,
    "amount": "25.50",
}
RESERVATION = {"reference": "run-1", "product_id": "sku-1", "quantity": 3}
PAYMENT = {"reference": "run-1", "customer_id": "customer-1", "amount": "25.50"}
SHIPMENT = {
    "reference": "run-1",
    "customer_id": "customer-1",
    "product_id": "sku-1",
    "quantity": 3,
}

# Per service: the action's path and body, and the compensation's path.
SERVICE_CALLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "order": ("/demo/order/orders/", ORDER, "/demo/order/orders/run-1/cancel/"),
    "inventory": (
        "/demo/inventory/reservations/",
        RESERVATION,
        "/demo/inventory/reservations/run-1/release/",
    ),
    "payment": (
        "/demo/payment/payments/",
        PAYMENT,
        "/demo/payment/payments/run-1/refund/",
    ),
    "shipping": (
        "/demo/shipping/shipments/",
        SHIPMENT,
        "/demo/shipping/shipments/run-1/cancel/",
    ),
}


@pytest.fixture(autouse=True)
def fresh_fault_cache() -> None:
    """Start each test without fault settings cached by an earlier one."""
    faults.clear_cache()


@pytest.fixture
def seeded(db: Any) -> None:
    seed_demo_data()


@pytest.fixture
def client(seeded: None) -> APIClient:
    """An anonymous client, as the saga worker calls the demo services."""
    return APIClient()


@pytest.fixture
def operator_client(seeded: None, operator: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(operator)
    return client


@pytest.fixture
def reader_client(seeded: None, reader: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(reader)
    return client
