"""A protected call through POST /api/calls/ trips and heals a breaker.

Runs against the whole control plane: the call goes through the REST API to
a real Celery worker, which sends it through the payment target's pipeline
to the demo payment service over HTTP. The demo policy opens the breaker
when half of at least 10 recorded calls fail and waits 10 s in open.
"""

import time
import uuid
from typing import Any

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.stack

OPEN_WAIT_SECONDS = 10.0


def protected_charge(stack: Stack) -> dict[str, Any]:
    reference = f"breaker-{uuid.uuid4().hex[:12]}"
    response = stack.post(
        "/api/calls/",
        json={
            "target": "payment",
            "method": "POST",
            "path": "/payments/",
            "json": {"reference": reference, "customer_id": "c", "amount": "1.00"},
        },
        headers={"Idempotency-Key": reference},
        timeout=150,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def breaker(stack: Stack) -> dict[str, Any]:
    return dict(stack.get("/api/breakers/payment/").json())


def test_breaker_opens_under_faults_and_closes_after(stack: Stack) -> None:
    reset = stack.post("/api/breakers/payment/reset/")
    assert reset.status_code == 200, reset.text
    stack.set_fault("payment", error_rate=1.0)
    try:
        outcomes = [protected_charge(stack) for _ in range(5)]
    finally:
        stack.set_fault("payment", error_rate=0.0)

    # Each failed call made 3 attempts. The fourth call's first attempt was
    # the 10th recorded failure, which opened the breaker and stopped its
    # retries; the fifth call was rejected before any request went out.
    assert outcomes[0]["outcome"] == "failed"
    assert outcomes[0]["status_code"] == 503
    assert outcomes[0]["attempts"] == 3
    assert outcomes[-1]["outcome"] == "rejected"
    assert outcomes[-1]["rejected_by"] == "circuit_breaker"
    assert outcomes[-1]["attempts"] == 0
    opened = breaker(stack)
    assert opened["state"] == "open"
    assert opened["failure_rate"] == 100.0
    assert opened["transitions"][0]["to_state"] == "open"

    time.sleep(OPEN_WAIT_SECONDS + 0.5)
    healed = [protected_charge(stack) for _ in range(3)]

    assert [o["outcome"] for o in healed] == ["succeeded"] * 3
    closed = breaker(stack)
    assert closed["state"] == "closed"
    states = [(t["from_state"], t["to_state"]) for t in closed["transitions"][:2]]
    assert states == [("half_open", "closed"), ("open", "half_open")]
