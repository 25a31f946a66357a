"""Fixtures of the Idempotency-Key tests: operators, a saga, no broker."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.idempotency import fingerprint
from controlplane.models import IdempotencyRecord
from sagas.definitions import ORDER_SAGA
from sagas.models import SagaDefinition

# A saga definition that the API accepts, for the optional-key endpoints.
PING_SAGA = {
    "name": "ping",
    "input_schema": [],
    "steps": [
        {
            "name": "ping",
            "target": "order",
            "action": {"method": "POST", "path": "/ping/"},
        }
    ],
}

ORDER_INPUT = {
    "customer_id": "c-1",
    "product_id": "sku-1",
    "quantity": 2,
    "amount": "10.00",
}


def make_operator(username: str) -> User:
    user = User.objects.create_user(username, password=f"{username}-pass")
    group, _ = Group.objects.get_or_create(name=settings.OPERATOR_GROUP)
    user.groups.add(group)
    return user


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def start_run(client: APIClient, key: str | None, data: Any = None) -> Any:
    """POST /api/runs/ for the order saga, with ``key`` sent as is."""
    headers = {} if key is None else {"Idempotency-Key": key}
    body = {"saga": "order", "input": ORDER_INPUT if data is None else data}
    return client.post("/api/runs/", body, format="json", headers=headers)


def order_fingerprint(data: Any = None) -> str:
    """Return the fingerprint that start_run's request with ``data`` has."""
    body = {"saga": "order", "input": ORDER_INPUT if data is None else data}
    return fingerprint("POST", "/api/runs/", body)


def make_record(user: User, key: str, **fields: Any) -> IdempotencyRecord:
    """Store a record of POST /api/runs/ as a crashed or old request left it."""
    now = timezone.now()
    values: dict[str, Any] = {
        "principal": f"user:{user.pk}",
        "user": user,
        "key": key,
        "method": "POST",
        "route": "/api/runs/",
        "path": "/api/runs/",
        "fingerprint": "0" * 64,
        "status": IdempotencyRecord.Status.IN_PROGRESS,
        "claim_token": uuid.uuid4(),
        "created_at": now,
        "locked_until": now + timedelta(seconds=60),
        "expires_at": now + timedelta(hours=24),
    }
    values.update(fields)
    return IdempotencyRecord.objects.create(**values)


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, int]]:
    """Replace the first step's Celery enqueue, so no broker is needed."""
    enqueued: list[tuple[Any, int]] = []
    monkeypatch.setattr(
        "sagas.services.enqueue_step",
        lambda run_id, index: enqueued.append((run_id, index)),
    )
    return enqueued


@pytest.fixture
def operator(db: Any) -> User:
    return make_operator("olivia")


@pytest.fixture
def second_operator(db: Any) -> User:
    return make_operator("oscar")


@pytest.fixture
def reader(db: Any) -> User:
    return User.objects.create_user("rafael", password="reader-pass")


@pytest.fixture
def operator_client(operator: User) -> APIClient:
    return client_for(operator)


@pytest.fixture
def order_saga(db: Any) -> SagaDefinition:
    fields = {
        k: ORDER_SAGA[k] for k in ("name", "description", "input_schema", "steps")
    }
    return SagaDefinition.objects.create(**fields)


@pytest.fixture(autouse=True)
def ping_target(db: Any) -> Any:
    """The target PING_SAGA calls: a saga may only name a registered one."""
    from resilience.models import Target

    return Target.objects.get_or_create(
        name="order", defaults={"base_url": "http://127.0.0.1:9/order"}
    )[0]
