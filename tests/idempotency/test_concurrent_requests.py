"""Simultaneous requests with one key execute once; the rest get 409 or a replay.

Each thread has its own database connection, so the claim really races on
the unique constraint: on PostgreSQL, and on SQLite through its write lock.
"""

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import client_for, start_run

REQUESTS = 50


@pytest.mark.django_db(transaction=True)
def test_fifty_requests_one_key_one_run(
    operator: User, order_saga: SagaDefinition
) -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]
        # Connections to a shared in-memory SQLite database fail with
        # "database table is locked" instead of waiting for the lock.
        pytest.skip("needs a file database: set CONTROLPLANE_TEST_DB")
    barrier = threading.Barrier(REQUESTS)
    responses: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            client = client_for(operator)
            barrier.wait(timeout=30)
            responses.append(start_run(client, "one-order"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(responses) == REQUESTS
    assert SagaRun.objects.count() == 1
    run_id = str(SagaRun.objects.get().pk)

    executed = [r for r in responses if r.status_code == 201 and not _replayed(r)]
    replayed = [r for r in responses if r.status_code == 201 and _replayed(r)]
    conflicts = [r for r in responses if r.status_code == 409]
    assert len(executed) == 1
    assert len(executed) + len(replayed) + len(conflicts) == REQUESTS
    assert all(r.json()["id"] == run_id for r in executed + replayed)
    assert all(int(r["Retry-After"]) >= 1 for r in conflicts)


def _replayed(response: Any) -> bool:
    return bool(response.get("Idempotent-Replayed") == "true")
