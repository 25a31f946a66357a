"""/api/faults/: anyone logged in reads, operators change, input is checked."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from demo.models import FaultSetting
from tests.demo.conftest import SERVICE_CALLS, post


def test_anonymous_401(client: APIClient) -> None:
    assert client.get("/api/faults/").status_code == 401
    response = client.put("/api/faults/order/", {"error_rate": 1.0, "latency_ms": 0})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_reader_reads(reader_client: APIClient) -> None:
    response = reader_client.get("/api/faults/")

    assert response.status_code == 200
    assert [row["service"] for row in response.json()] == [
        "order",
        "inventory",
        "payment",
        "shipping",
    ]
    assert response.json()[0]["error_rate"] == 0.0
    assert response.json()[0]["latency_ms"] == 0


def test_reader_cannot_write_403(reader_client: APIClient) -> None:
    response = reader_client.put(
        "/api/faults/order/", {"error_rate": 1.0, "latency_ms": 0}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert FaultSetting.objects.get(service="order").error_rate == 0.0


def test_operator_sets_faults(operator_client: APIClient) -> None:
    response = operator_client.put(
        "/api/faults/payment/", {"error_rate": 0.25, "latency_ms": 100}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["service"] == "payment"
    assert response.json()["error_rate"] == 0.25
    assert response.json()["latency_ms"] == 100
    setting = FaultSetting.objects.get(service="payment")
    assert setting.error_rate == 0.25
    assert setting.latency_ms == 100


def test_change_applies_at_once(operator_client: APIClient) -> None:
    path, body, _ = SERVICE_CALLS["payment"]
    assert post(APIClient(), path, body).status_code == 201

    operator_client.put(
        "/api/faults/payment/", {"error_rate": 1.0, "latency_ms": 0}, format="json"
    )

    assert post(APIClient(), path, {**body, "reference": "run-2"}).status_code == 503


def test_patch_changes_one_field(operator_client: APIClient) -> None:
    FaultSetting.objects.filter(service="order").update(latency_ms=300)

    response = operator_client.patch(
        "/api/faults/order/", {"error_rate": 0.5}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["latency_ms"] == 300
    assert response.json()["error_rate"] == 0.5


def test_put_needs_both_fields(operator_client: APIClient) -> None:
    response = operator_client.put(
        "/api/faults/order/", {"error_rate": 0.5}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "latency_ms"
    assert response.json()["errors"][0]["code"] == "required"


def test_unknown_service_404(operator_client: APIClient) -> None:
    response = operator_client.get("/api/faults/billing/")

    assert response.status_code == 404
    assert "'billing'" in response.json()["detail"]
    assert "order" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("error_rate", 1.5, "max_value"),
        ("error_rate", -0.1, "min_value"),
        ("error_rate", "often", "invalid"),
        ("error_rate", True, "invalid"),
        ("latency_ms", 60001, "max_value"),
        ("latency_ms", -1, "min_value"),
        ("latency_ms", 1.5, "invalid"),
    ],
)
def test_invalid_value_400(
    operator_client: APIClient, field: str, value: Any, rule: str
) -> None:
    body = {"error_rate": 0.0, "latency_ms": 0, field: value}

    response = operator_client.put("/api/faults/order/", body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert error["field"] == field
    assert error["code"] == rule
    assert error["value"] == value
    assert FaultSetting.objects.get(service="order").error_rate == 0.0


def test_unknown_field_400(operator_client: APIClient) -> None:
    response = operator_client.put(
        "/api/faults/order/",
        {"error_rate": 0.0, "latency_ms": 0, "timeout": 5},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "timeout"
    assert error["code"] == "unknown_field"
    assert error["value"] == 5


def test_put_names_unknown_and_missing_fields(operator_client: APIClient) -> None:
    response = operator_client.put("/api/faults/order/", {"foo": 1}, format="json")

    assert response.status_code == 400
    errors = {e["field"]: e["code"] for e in response.json()["errors"]}
    assert errors == {
        "foo": "unknown_field",
        "error_rate": "required",
        "latency_ms": "required",
    }
