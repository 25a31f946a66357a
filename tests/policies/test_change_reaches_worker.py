"""A tightened rate limit applies in a real Celery worker within a second.

Runs against the whole control plane: the policy changes through the REST
API in the gunicorn process, and the calls run in the Celery worker's pool
processes, each of which caches policies and listens for changes.
"""

import time
import uuid
from typing import Any

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.stack


def state_call(stack: Stack, target: str) -> dict[str, Any]:
    key = uuid.uuid4().hex
    response = stack.post(
        "/api/calls/",
        json={"target": target, "method": "GET", "path": "/state/"},
        headers={"Idempotency-Key": key},
        timeout=150,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_tightened_rate_limit_applies_within_a_second(stack: Stack) -> None:
    payment = stack.get("/api/targets/payment/").json()
    name = f"limited-{uuid.uuid4().hex[:8]}"
    created = stack.post(
        "/api/targets/", json={"name": name, "base_url": payment["base_url"]}
    )
    assert created.status_code == 201, created.text
    try:
        policy = stack.post(
            "/api/policies/",
            json={
                "target": name,
                "rate_limiter": {
                    "limit_for_period": 1000,
                    "limit_refresh_period": 1.0,
                    "timeout_duration": 0,
                },
                "retry": {"max_attempts": 1},
            },
        )
        assert policy.status_code == 201, policy.text
        # A first call makes a worker process cache the generous policy.
        warm = state_call(stack, name)
        assert warm["outcome"] == "succeeded", warm

        # Two permits per minute: the warm-up call holds one of them, so
        # the next call is admitted and the one after is rejected.
        tightened = stack.api.patch(
            stack.url(f"/api/policies/{name}/"),
            json={"rate_limiter": {"limit_for_period": 2, "limit_refresh_period": 60}},
            timeout=10,
        )
        assert tightened.status_code == 200, tightened.text
        assert tightened.json()["version"] == 2
        time.sleep(1.0)
        first = state_call(stack, name)
        second = state_call(stack, name)

        assert first["outcome"] == "succeeded", first
        assert second["outcome"] == "rejected", second
        assert second["rejected_by"] == "rate_limiter"
    finally:
        stack.api.delete(stack.url(f"/api/targets/{name}/"), timeout=10)
