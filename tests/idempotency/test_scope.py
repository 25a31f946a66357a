"""A key is scoped to its user and its endpoint."""

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from controlplane.models import IdempotencyRecord
from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import PING_SAGA, client_for, start_run


def test_two_users_same_key_do_not_collide(
    operator: User, second_operator: User, order_saga: SagaDefinition
) -> None:
    first = start_run(client_for(operator), "shared-key")
    second = start_run(client_for(second_operator), "shared-key")

    assert first.status_code == 201
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert first.json()["id"] != second.json()["id"]
    assert SagaRun.objects.count() == 2
    principals = set(IdempotencyRecord.objects.values_list("principal", flat=True))
    assert principals == {f"user:{operator.pk}", f"user:{second_operator.pk}"}


def test_same_key_on_two_endpoints_do_not_collide(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    run = start_run(operator_client, "shared-key")
    saga = operator_client.post(
        "/api/sagas/",
        PING_SAGA,
        format="json",
        headers={"Idempotency-Key": "shared-key"},
    )

    assert run.status_code == 201
    assert saga.status_code == 201
    routes = set(IdempotencyRecord.objects.values_list("route", flat=True))
    assert routes == {"/api/runs/", "/api/sagas/"}
