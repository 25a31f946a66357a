"""GET /api/idempotency-records/: filters, detail, and who may read."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.models import IdempotencyRecord
from sagas.models import SagaDefinition
from tests.idempotency.conftest import client_for, make_record, start_run

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def keys(response: Any) -> list[str]:
    return [record["key"] for record in response.json()["results"]]


@pytest.fixture
def records(operator: User) -> None:
    now = timezone.now()
    make_record(operator, "alpha-1", status="completed", response_status=201)
    make_record(operator, "alpha-2", created_at=now - timedelta(days=2))
    make_record(operator, "beta-1", method="PUT", route="/api/sagas/{name}/")


def test_reader_lists_records(reader: User, records: None) -> None:
    response = client_for(reader).get("/api/idempotency-records/")

    assert response.status_code == 200
    assert sorted(keys(response)) == ["alpha-1", "alpha-2", "beta-1"]
    assert "response_body" not in response.json()["results"][0]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("key=alpha-1", ["alpha-1"]),
        ("key=alpha", []),
        ("key_contains=alpha", ["alpha-1", "alpha-2"]),
        ("status=completed", ["alpha-1"]),
        ("status=in_progress", ["alpha-2", "beta-1"]),
        ("route=/api/sagas/{name}/", ["beta-1"]),
        ("route=PUT /api/sagas/{name}/", ["beta-1"]),
        ("route=POST /api/sagas/{name}/", []),
        ("created_before=" + "2000-01-01", []),
        ("created_after=2000-01-01T00:00:00Z", ["alpha-1", "alpha-2", "beta-1"]),
    ],
)
def test_filters(reader: User, records: None, query: str, expected: list[str]) -> None:
    response = client_for(reader).get(f"/api/idempotency-records/?{query}")

    assert response.status_code == 200, response.content
    assert sorted(keys(response)) == expected


def test_created_after_excludes_older(reader: User, records: None) -> None:
    since = (timezone.now() - timedelta(days=1)).isoformat()

    response = client_for(reader).get(
        "/api/idempotency-records/", {"created_after": since}
    )

    assert sorted(keys(response)) == ["alpha-1", "beta-1"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "done"),
        ("created_after", "yesterday"),
        ("created_before", "2024-13-01"),
        ("run", "not-a-uuid"),
    ],
)
def test_invalid_filter_names_field(
    reader: User, records: None, field: str, value: str
) -> None:
    response = client_for(reader).get("/api/idempotency-records/", {field: value})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert error["field"] == field
    assert value in error["message"]


def test_detail_has_body_trace_and_run(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    started = operator_client.post(
        "/api/runs/",
        {
            "saga": "order",
            "input": {
                "customer_id": "c-1",
                "product_id": "p",
                "quantity": 1,
                "amount": "1.00",
            },
        },
        format="json",
        headers={"Idempotency-Key": "traced", "traceparent": TRACEPARENT},
    )
    record = IdempotencyRecord.objects.get(key="traced")

    response = operator_client.get(f"/api/idempotency-records/{record.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert body["run_id"] == started.json()["id"]
    assert body["endpoint"] == "POST /api/runs/"
    assert body["username"] == "olivia"
    assert body["response_body"] == started.content.decode()


def test_invalid_traceparent_stores_no_trace(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"

    operator_client.post(
        "/api/runs/",
        {"saga": "order", "input": {}},
        format="json",
        headers={"Idempotency-Key": "untraced", "traceparent": invalid},
    )

    assert IdempotencyRecord.objects.get(key="untraced").trace_id is None


def test_run_filter(operator_client: APIClient, order_saga: SagaDefinition) -> None:
    run_id = start_run(operator_client, "order-1").json()["id"]
    start_run(operator_client, "order-2")

    response = operator_client.get("/api/idempotency-records/", {"run": run_id})

    assert keys(response) == ["order-1"]


def test_anonymous_gets_401(records: None) -> None:
    response = APIClient().get("/api/idempotency-records/")

    assert response.status_code == 401


def test_records_are_read_only(operator_client: APIClient, records: None) -> None:
    record = IdempotencyRecord.objects.first()
    assert record is not None

    response = operator_client.delete(f"/api/idempotency-records/{record.pk}/")

    assert response.status_code == 405
