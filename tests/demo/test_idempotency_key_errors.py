"""A reused key with another body gets 422; a malformed key gets 400."""

from rest_framework.test import APIClient

from demo.models import Payment
from tests.demo.conftest import PAYMENT, post


def test_same_key_different_body_422(client: APIClient) -> None:
    first = post(client, "/demo/payment/payments/", PAYMENT, key="k-1")
    second = post(
        client, "/demo/payment/payments/", {**PAYMENT, "amount": "99.00"}, key="k-1"
    )

    assert first.status_code == 201
    assert second.status_code == 422
    assert second.json()["code"] == "idempotency_key_reused"
    assert "k-1" in second.json()["detail"]
    assert str(Payment.objects.get().amount) == "25.50"


def test_same_key_different_path_422(client: APIClient) -> None:
    post(client, "/demo/payment/payments/", PAYMENT, key="k-2")

    refund = post(client, "/demo/payment/payments/run-1/refund/", key="k-2")

    assert refund.status_code == 422
    assert Payment.objects.get().status == "charged"


def test_key_over_255_characters_400(client: APIClient) -> None:
    response = post(client, "/demo/payment/payments/", PAYMENT, key="k" * 256)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "idempotency_key_invalid"
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert body["errors"][0]["code"] == "max_length"
    assert "256" in body["detail"]
    assert not Payment.objects.exists()


def test_key_of_255_characters_accepted(client: APIClient) -> None:
    response = post(client, "/demo/payment/payments/", PAYMENT, key="k" * 255)

    assert response.status_code == 201


def test_empty_key_400(client: APIClient) -> None:
    response = post(client, "/demo/payment/payments/", PAYMENT, key="")

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "blank"
