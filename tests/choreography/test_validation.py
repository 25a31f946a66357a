"""Invalid input to the choreography and outbox endpoints gets a 4xx naming it."""

import uuid
from typing import Any

import pytest
from django.utils import timezone

from controlplane.models import OutboxEvent
from controlplane.seed import seed
from sagas.definitions import ORDER_CHOREOGRAPHY_SAGA
from sagas.models import SagaDefinition, SagaRun

pytestmark = pytest.mark.django_db

INPUT_SCHEMA = [{"name": "customer_id", "type": "string"}]


def field_errors(response: Any) -> dict[str, dict[str, Any]]:
    assert response["Content-Type"].startswith("application/problem+json")
    return {error["field"]: error for error in response.json()["errors"]}


def test_choreography_with_steps_rejected(operator_client: Any) -> None:
    steps = [
        {"name": "a", "target": "order", "action": {"method": "POST", "path": "/"}}
    ]
    response = operator_client.post(
        "/api/sagas/",
        {
            "name": "choreo",
            "kind": "choreography",
            "input_schema": INPUT_SCHEMA,
            "steps": steps,
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert response.status_code == 400
    error = field_errors(response)["steps"]
    assert error["code"] == "steps_not_allowed"
    assert "Must be []" in error["message"]
    assert error["value"] == steps


def test_choreography_of_order_flow_accepted(operator_client: Any) -> None:
    response = operator_client.post(
        "/api/sagas/",
        {
            "name": "choreo",
            "kind": "choreography",
            "input_schema": ORDER_CHOREOGRAPHY_SAGA["input_schema"],
            "steps": [],
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "choreography"


def test_choreography_of_other_flow_rejected(operator_client: Any) -> None:
    response = operator_client.post(
        "/api/sagas/",
        {
            "name": "choreo",
            "kind": "choreography",
            "input_schema": INPUT_SCHEMA,
            "steps": [],
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert response.status_code == 400
    error = field_errors(response)["input_schema"]
    assert error["code"] == "unsupported_flow"
    assert "demo order flow" in error["message"]
    assert "customer_id (string), product_id (string)" in error["message"]
    assert "got customer_id" in error["message"]
    assert error["value"] == INPUT_SCHEMA
    assert not SagaDefinition.objects.filter(name="choreo").exists()


def test_choreography_optional_order_field_rejected(operator_client: Any) -> None:
    schema = [dict(spec) for spec in ORDER_CHOREOGRAPHY_SAGA["input_schema"]]
    schema[0]["required"] = False

    response = operator_client.post(
        "/api/sagas/",
        {"name": "choreo", "kind": "choreography", "input_schema": schema},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert response.status_code == 400
    assert field_errors(response)["input_schema"]["code"] == "unsupported_flow"


def test_seeded_choreography_input_change_rejected(operator_client: Any) -> None:
    seed("http://127.0.0.1:9")

    response = operator_client.patch(
        "/api/sagas/order-choreography/",
        {"input_schema": INPUT_SCHEMA},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert response.status_code == 400
    assert field_errors(response)["input_schema"]["code"] == "unsupported_flow"
    stored = SagaDefinition.objects.get(name="order-choreography")
    assert stored.input_schema == ORDER_CHOREOGRAPHY_SAGA["input_schema"]


def test_seeded_choreography_description_change_accepted(
    operator_client: Any,
) -> None:
    seed("http://127.0.0.1:9")

    response = operator_client.patch(
        "/api/sagas/order-choreography/",
        {"description": "The demo shop's order, by events."},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert response.status_code == 200, response.json()


def test_kind_change_to_choreography_rejected(operator_client: Any) -> None:
    seed("http://127.0.0.1:9")

    response = operator_client.patch(
        "/api/sagas/order/",
        {"kind": "choreography"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert response.status_code == 400
    assert field_errors(response)["steps"]["code"] == "steps_not_allowed"
    assert SagaDefinition.objects.get(name="order").kind == "orchestrated"


@pytest.mark.parametrize(
    ("params", "field", "value"),
    [
        ({"status": "lost"}, "status", "lost"),
        ({"service": "billing"}, "service", "billing"),
        ({"correlation_id": "x" * 65}, "correlation_id", "x" * 65),
        ({"colour": "red"}, "colour", "red"),
    ],
)
def test_outbox_filter_rejected(
    reader_client: Any, params: dict[str, str], field: str, value: str
) -> None:
    response = reader_client.get("/api/outbox/events/", params)

    assert response.status_code == 400
    error = field_errors(response)[field]
    assert error["value"] == value


def test_redeliver_unknown_event_not_found(operator_client: Any) -> None:
    response = operator_client.post(f"/api/outbox/events/{uuid.uuid4()}/redeliver/")

    assert response.status_code == 404


def test_redeliver_unsent_event_conflicts(operator_client: Any) -> None:
    event = OutboxEvent.objects.create(
        service="order",
        event_type="OrderCreated",
        correlation_id="r-1",
        created_at=timezone.now(),
    )

    response = operator_client.post(f"/api/outbox/events/{event.event_id}/redeliver/")

    assert response.status_code == 409
    assert "pending" in response.json()["detail"]


def test_redeliver_needs_operator(reader_client: Any) -> None:
    response = reader_client.post(f"/api/outbox/events/{uuid.uuid4()}/redeliver/")

    assert response.status_code == 403


def test_choreographed_run_not_cancellable(operator_client: Any) -> None:
    seed("http://127.0.0.1:9")
    definition = SagaDefinition.objects.get(name="order-choreography")
    run = SagaRun.objects.create(definition=definition, input={})

    response = operator_client.post(
        f"/api/runs/{run.pk}/cancel/", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )

    assert response.status_code == 409
    assert "orchestrated" in response.json()["detail"]


def test_checkout_invalid_quantity_rejected(client: Any) -> None:
    body = {
        "reference": "r-1",
        "customer_id": "c-1",
        "product_id": "sku-1",
        "quantity": 0,
        "amount": "1.00",
    }

    response = client.post(
        "/demo/order/checkouts/", body, content_type="application/json"
    )

    assert response.status_code == 400
    error = field_errors(response)["quantity"]
    assert error["code"] == "min_value"
    assert error["value"] == 0
    assert not OutboxEvent.objects.exists()
