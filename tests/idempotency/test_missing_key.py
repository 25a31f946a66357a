"""Endpoints that require a key reject a request without one."""

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from controlplane.models import IdempotencyRecord
from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import PING_SAGA, start_run


def test_start_run_without_key_is_400(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start_run(operator_client, None)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "idempotency_key_missing"
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert body["errors"][0]["code"] == "required"
    assert "POST /api/runs/" in body["detail"]
    assert SagaRun.objects.count() == 0


def test_call_without_key_is_400(operator_client: APIClient) -> None:
    response = operator_client.post("/api/calls/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_missing"


def test_optional_endpoint_runs_without_key(operator_client: APIClient) -> None:
    response = operator_client.post("/api/sagas/", PING_SAGA, format="json")

    assert response.status_code == 201, response.content
    assert IdempotencyRecord.objects.count() == 0


def test_optional_endpoint_replays_with_key(operator_client: APIClient) -> None:
    headers = {"Idempotency-Key": "define-ping"}

    first = operator_client.post(
        "/api/sagas/", PING_SAGA, format="json", headers=headers
    )
    second = operator_client.post(
        "/api/sagas/", PING_SAGA, format="json", headers=headers
    )

    assert first.status_code == 201, first.content
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert SagaDefinition.objects.filter(name="ping").count() == 1


def test_reader_gets_403_before_key_check(
    reader: User, order_saga: SagaDefinition
) -> None:
    client = APIClient()
    client.force_authenticate(reader)

    response = start_run(client, None)

    assert response.status_code == 403
    assert IdempotencyRecord.objects.count() == 0
