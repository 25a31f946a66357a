"""POST /api/runs/ with a TCC definition, and what the run detail shows."""

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from sagas.models import SagaDefinition, StepRun
from sagas.tcc_definitions import ORDER_TCC

VALID = {"customer_id": "c-1", "product_id": "sku-1", "quantity": 2, "amount": "10.00"}


@pytest.fixture
def order_tcc(db: Any) -> SagaDefinition:
    fields = {k: ORDER_TCC[k] for k in ("name", "kind", "input_schema", "steps")}
    return SagaDefinition.objects.create(**fields)


def start(client: APIClient, data: Any) -> Any:
    return client.post(
        "/api/runs/",
        {"saga": "order-tcc", "input": data},
        format="json",
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def test_start_stores_decision_and_tries(
    operator_client: APIClient,
    order_tcc: SagaDefinition,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = start(operator_client, VALID)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["kind"] == "tcc"
    assert body["decision"]["decision"] == ""
    assert [p["name"] for p in body["participants"]] == [
        "order",
        "inventory",
        "payment",
    ]
    assert body["participants"][2]["phases"]["try"]["status"] == "pending"
    assert StepRun.objects.filter(run_id=body["id"]).count() == 0
    assert len(callbacks) == 1


def test_invalid_input_names_field(
    operator_client: APIClient, order_tcc: SagaDefinition
) -> None:
    response = start(operator_client, {**VALID, "quantity": 0})

    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert error["field"] == "input.quantity"
    assert error["value"] == 0


def test_tcc_run_cannot_be_cancelled(
    operator_client: APIClient, order_tcc: SagaDefinition
) -> None:
    run_id = start(operator_client, VALID).json()["id"]

    response = operator_client.post(f"/api/runs/{run_id}/cancel/")

    assert response.status_code == 409, response.content
    assert "cannot be cancelled by hand" in response.json()["detail"]
    assert operator_client.get(f"/api/runs/{run_id}/").json()["status"] == "pending"
