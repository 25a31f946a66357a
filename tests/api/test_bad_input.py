"""Malformed requests get a 4xx in the API's one error shape, never a 500."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from sagas.models import SagaDefinition, SagaRun

VALID = {"customer_id": "c-1", "product_id": "sku-1", "quantity": 2, "amount": "1.00"}


def post_raw(client: APIClient, path: str, body: str) -> Any:
    return client.post(
        path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="bad-input"
    )


def test_deeply_nested_json_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    body = '{"saga": "order", "input": ' + "[" * 1000 + "]" * 1000 + "}"

    response = post_raw(operator_client, "/api/runs/", body)

    assert response.status_code == 400
    assert "nested deeper than 64 levels" in response.json()["detail"]


def test_infinite_number_is_reported_as_text(operator_client: APIClient) -> None:
    response = operator_client.patch(
        "/api/faults/payment/", '{"error_rate": 1e999}', content_type="application/json"
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "error_rate"
    assert error["value"] == "inf"


def test_unknown_top_level_field_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = operator_client.post(
        "/api/runs/",
        {"saga": "order", "input": VALID, "bogus": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="unknown-field",
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "bogus"
    assert error["code"] == "unknown_field"
    assert error["value"] == 1
    assert SagaRun.objects.count() == 0


def test_list_value_is_echoed(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = operator_client.post(
        "/api/runs/",
        {"saga": ["order"], "input": VALID},
        format="json",
        HTTP_IDEMPOTENCY_KEY="list-value",
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["value"] == ["order"]


@pytest.mark.parametrize(
    "query", ["limit=-1", "limit=abc", "offset=-5", "limit=100000"]
)
def test_bad_pagination_rejected(reader_client: APIClient, query: str) -> None:
    response = reader_client.get(f"/api/runs/?{query}")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] in {"limit", "offset"}


def test_unknown_api_path_is_problem_json(reader_client: APIClient) -> None:
    response = reader_client.get("/api/no-such-thing/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_unsupported_media_type_title(operator_client: APIClient) -> None:
    response = operator_client.post(
        "/api/runs/", "x", content_type="text/plain", HTTP_IDEMPOTENCY_KEY="media"
    )

    assert response.status_code == 415
    assert response.json()["title"] == "Unsupported Media Type."
    assert "text/plain" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/../../admin/", "/a/./b", "/%2E%2E/admin/"])
def test_call_path_cannot_leave_target(
    operator_client: APIClient, order_saga: SagaDefinition, path: str
) -> None:
    from resilience.models import Target

    Target.objects.create(name="payment", base_url="http://127.0.0.1:9/demo/payment")

    response = operator_client.post(
        "/api/calls/",
        {"target": "payment", "method": "GET", "path": path},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"path-{path}",
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "path"
    assert error["value"] == path


def test_long_bad_value_is_echoed_cut(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = operator_client.post(
        "/api/runs/",
        {"saga": "order", "input": {**VALID, "customer_id": "x" * 5000}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="long-value",
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "input.customer_id"
    assert error["value"] == "x" * 500 + "... [cut at 500 of 5000]"


def test_oversized_body_is_413_problem(
    operator_client: APIClient, order_saga: SagaDefinition, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"saga": "order", "input": {"customer_id": "' + "x" * 2000 + '"}}'

    response = post_raw(operator_client, "/api/runs/", body)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "body_too_large"
    assert "at most 1000 bytes" in response.json()["detail"]
    assert SagaRun.objects.count() == 0


def test_number_for_text_input_is_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = operator_client.post(
        "/api/runs/",
        {"saga": "order", "input": {**VALID, "customer_id": 5}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="number-for-text",
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "input.customer_id"
    assert error["code"] == "not_a_string"
    assert error["value"] == 5
    assert not SagaRun.objects.exists()


def test_saga_name_of_wrong_type_is_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = operator_client.post(
        "/api/runs/",
        {"saga": {"a": 1}, "input": VALID},
        format="json",
        HTTP_IDEMPOTENCY_KEY="saga-object",
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "saga"
    assert error["code"] == "not_a_string"
    assert error["message"] == "Must be a saga name (a string), not dict."
    assert error["value"] == {"a": 1}
