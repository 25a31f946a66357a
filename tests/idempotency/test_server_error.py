"""A 5xx or an exception frees the key, so a retry executes."""

from typing import Any

import pytest
from rest_framework.exceptions import APIException
from rest_framework.test import APIClient

from controlplane.models import IdempotencyRecord
from sagas import services
from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import start_run


def fail_once(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """Make the next services.start_run raise ``error``, then work again."""
    real = services.start_run
    calls = {"count": 0}

    def start(*args: Any, **kwargs: Any) -> Any:
        calls["count"] += 1
        if calls["count"] == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "start_run", start)


def test_exception_frees_key(
    operator_client: APIClient,
    order_saga: SagaDefinition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_once(monkeypatch, RuntimeError("database went away"))
    operator_client.raise_request_exception = False

    failed = start_run(operator_client, "order-1")
    assert failed.status_code == 500
    assert IdempotencyRecord.objects.count() == 0

    retried = start_run(operator_client, "order-1")
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert SagaRun.objects.count() == 1


def test_503_response_frees_key(
    operator_client: APIClient,
    order_saga: SagaDefinition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unavailable = APIException("Try again.")
    unavailable.status_code = 503
    fail_once(monkeypatch, unavailable)

    failed = start_run(operator_client, "order-1")
    assert failed.status_code == 503
    assert failed["Content-Type"] == "application/problem+json"
    assert IdempotencyRecord.objects.count() == 0

    retried = start_run(operator_client, "order-1")
    assert retried.status_code == 201
    assert SagaRun.objects.count() == 1
