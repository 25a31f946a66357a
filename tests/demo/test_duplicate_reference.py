"""A second action for one reference under a new key is rejected."""

import pytest
from rest_framework.test import APIClient

from demo.models import Product
from tests.demo.conftest import SERVICE_CALLS, post, state


@pytest.mark.parametrize("service", list(SERVICE_CALLS))
def test_second_action_409(client: APIClient, service: str) -> None:
    path, body, _ = SERVICE_CALLS[service]

    first = post(client, path, body, key="key-a")
    second = post(client, path, body, key="key-b")
    without_key = post(client, path, body)

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["code"] == "duplicate_reference"
    assert without_key.status_code == 409
    summary = state(client, service)
    assert summary["effects_applied"] == 1
    assert summary["duplicate_effects"] == 0


def test_second_reservation_takes_no_stock(client: APIClient) -> None:
    path, body, _ = SERVICE_CALLS["inventory"]

    post(client, path, body, key="key-a")
    post(client, path, body, key="key-b")

    assert Product.objects.get(product_id="sku-1").reserved == 3
