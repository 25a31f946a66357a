"""An order is created pending, then confirmed or cancelled."""

from rest_framework.test import APIClient

from tests.demo.conftest import ORDER, post


def test_created_pending(client: APIClient) -> None:
    response = post(client, "/demo/order/orders/", ORDER)

    assert response.status_code == 201
    body = response.json()
    assert body["reference"] == "run-1"
    assert body["status"] == "pending"
    assert body["amount"] == "25.50"
    assert body["quantity"] == 2


def test_confirmed(client: APIClient) -> None:
    post(client, "/demo/order/orders/", ORDER)

    response = post(client, "/demo/order/orders/run-1/confirm/")
    again = post(client, "/demo/order/orders/run-1/confirm/")

    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"
    assert again.status_code == 200
    assert client.get("/demo/order/orders/run-1/").json()["status"] == "confirmed"


def test_cancelled_cannot_be_confirmed(client: APIClient) -> None:
    post(client, "/demo/order/orders/", ORDER)
    cancel = post(client, "/demo/order/orders/run-1/cancel/")

    confirm = post(client, "/demo/order/orders/run-1/confirm/")

    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"
    assert confirm.status_code == 409
    assert confirm.json()["code"] == "order_cancelled"


def test_confirmed_order_can_be_cancelled(client: APIClient) -> None:
    post(client, "/demo/order/orders/", ORDER)
    post(client, "/demo/order/orders/run-1/confirm/")

    response = post(client, "/demo/order/orders/run-1/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_unknown_order_404(client: APIClient) -> None:
    lookup = client.get("/demo/order/orders/nobody/")
    confirm = post(client, "/demo/order/orders/nobody/confirm/")

    assert lookup.status_code == 404
    assert "nobody" in lookup.json()["detail"]
    assert confirm.status_code == 404
