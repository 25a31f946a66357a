"""POST /api/runs/: a valid input starts a run, an invalid one nothing."""

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from sagas.models import RunStatusChange, SagaDefinition, SagaRun, StepRun

VALID = {"customer_id": "c-1", "product_id": "sku-1", "quantity": 2, "amount": "10.00"}


def start(client: APIClient, saga: str, data: Any) -> Any:
    """POST /api/runs/ with a fresh Idempotency-Key, as a client must send."""
    return client.post(
        "/api/runs/",
        {"saga": saga, "input": data},
        format="json",
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def test_start_run_stores_pending_run(
    operator_client: APIClient,
    order_saga: SagaDefinition,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = start(operator_client, "order", VALID)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["saga"] == "order"
    assert body["input"]["amount"] == "10.00"
    assert len(body["steps"]) == 5
    assert StepRun.objects.filter(run_id=body["id"], status="pending").count() == 5
    assert RunStatusChange.objects.filter(run_id=body["id"]).count() == 1
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("quantity", 0, "min_value"),
        ("quantity", "many", "invalid"),
        ("quantity", 1001, "max_value"),
        ("amount", "0.00", "min_value"),
        ("amount", "12.345", "max_decimal_places"),
        ("amount", "abc", "invalid"),
        ("customer_id", "x" * 65, "max_length"),
        ("customer_id", None, "null"),
    ],
)
def test_invalid_input_names_field_rule_value(
    operator_client: APIClient,
    order_saga: SagaDefinition,
    field: str,
    value: Any,
    code: str,
) -> None:
    response = start(operator_client, "order", {**VALID, field: value})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert errors[0]["field"] == f"input.{field}"
    assert errors[0]["code"] == code
    if value is not None:
        assert errors[0]["value"] == value
    assert SagaRun.objects.count() == 0


def test_missing_field_is_required(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    data = {k: v for k, v in VALID.items() if k != "amount"}

    response = start(operator_client, "order", data)

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "input.amount",
            "code": "required",
            "message": "This field is required.",
        }
    ]


def test_unknown_input_field_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start(operator_client, "order", {**VALID, "coupon": "FREE"})

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "input.coupon"
    assert error["code"] == "unknown_field"
    assert SagaRun.objects.count() == 0


def test_unknown_saga_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start(operator_client, "refund", VALID)

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "saga"
    assert error["code"] == "does_not_exist"
    assert error["value"] == "refund"


def test_input_must_be_object(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start(operator_client, "order", [1, 2])

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "input"


def test_reader_cannot_start_run(
    reader_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start(reader_client, "order", VALID)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert SagaRun.objects.count() == 0


def test_anonymous_gets_401(order_saga: SagaDefinition) -> None:
    response = start(APIClient(), "order", VALID)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_run_list_rejects_unknown_status(reader_client: APIClient) -> None:
    response = reader_client.get("/api/runs/?status=exploded")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "status"


def test_missing_idempotency_key_gets_400(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = operator_client.post(
        "/api/runs/", {"saga": "order", "input": VALID}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_missing"
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert SagaRun.objects.count() == 0
