"""A policy change keeps the breaker's window unless its type or size changes.

Runs calls through the target's real pipeline with its state in Redis.
"""

import uuid
from typing import Any

from rest_framework.test import APIClient

from resilience import services
from resilience.models import BreakerTransition, Target


def call_ok(name: str) -> None:
    result = services.pipeline(name).execute(lambda: "ok")
    assert result.outcome == "succeeded"


def buffered(name: str) -> int:
    return int(services.breaker_state(name)["buffered_calls"])


def test_window_kept_then_reset(operator_client: APIClient, on_commit: Any) -> None:
    name = f"state-{uuid.uuid4().hex[:8]}"
    Target.objects.create(name=name, base_url="http://127.0.0.1:9/")
    breaker = {"sliding_window_size": 10, "minimum_number_of_calls": 10}
    with on_commit():
        operator_client.post(
            "/api/policies/",
            {"target": name, "circuit_breaker": breaker},
            format="json",
        )
    for _ in range(3):
        call_ok(name)

    with on_commit():
        operator_client.patch(
            f"/api/policies/{name}/",
            {"circuit_breaker": {"failure_rate_threshold": 20}},
            format="json",
        )
    call_ok(name)

    assert services.pipeline(name).policy.version == 2
    assert buffered(name) == 4
    assert not BreakerTransition.objects.filter(reason="window_reconfigured").exists()

    with on_commit():
        operator_client.patch(
            f"/api/policies/{name}/",
            {"circuit_breaker": {"sliding_window_size": 5}},
            format="json",
        )
    call_ok(name)

    assert buffered(name) == 1
    event = BreakerTransition.objects.get(target__name=name)
    assert event.reason == "window_reconfigured"
    assert event.from_state == event.to_state == "closed"
