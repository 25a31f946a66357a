"""An operator's retry of a paused step numbers its attempts after the earlier ones.

The payment service returns 503 for every request, so the step uses up its
two attempts and the run pauses. Each operator retry runs the step's retry
budget again with the same Idempotency-Key; its attempts are stored as 3, 4
and then 5, never as a second "attempt 1".
"""

import time
import uuid
from typing import Any

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.stack


def pausing_charge_saga(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "input_schema": [],
        "steps": [
            {
                "name": "charge",
                "target": "payment",
                "action": {
                    "method": "POST",
                    "path": "/payments/",
                    "body": {
                        "reference": "{{run.id}}",
                        "customer_id": "customer-pause",
                        "amount": "2.00",
                    },
                },
                "compensation": {
                    "method": "POST",
                    "path": "/payments/{{run.id}}/refund/",
                },
                "retry": {
                    "max_attempts": 2,
                    "initial_interval": 0.1,
                    "jitter": "none",
                },
                "on_failure": "pause",
            }
        ],
    }


def wait_for_status(stack: Stack, run_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = stack.get(f"/api/runs/{run_id}/").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached {statuses}: {run}")


def action_numbers(run: dict[str, Any]) -> list[int]:
    attempts = run["steps"][0]["attempt_log"]
    return [a["number"] for a in attempts if a["kind"] == "action"]


def retry(stack: Stack, run_id: str) -> None:
    response = stack.post(f"/api/runs/{run_id}/retry/")
    assert response.status_code == 200, response.text


def reset_payment_breaker(stack: Stack) -> None:
    """Close the payment breaker, so no call is rejected unsent.

    The session's stack is shared, and a breaker that earlier failures
    opened would turn attempts into rejections.
    """
    response = stack.post("/api/breakers/payment/reset/")
    assert response.status_code == 200, response.text


def test_retried_step_continues_attempt_numbers(stack: Stack) -> None:
    name = f"charge-pause-{uuid.uuid4().hex[:8]}"
    created = stack.post("/api/sagas/", json=pausing_charge_saga(name))
    assert created.status_code == 201, created.text

    reset_payment_breaker(stack)
    stack.set_fault("payment", error_rate=1.0)
    try:
        run_id = stack.start_run(name, {})["id"]
        paused = wait_for_status(stack, run_id, {"paused"})
        assert action_numbers(paused) == [1, 2]

        retry(stack, run_id)
        # The retry moves the run to running before it responds, so this
        # waits for the second pause, stored with its attempts.
        paused_again = wait_for_status(stack, run_id, {"paused"})
        assert action_numbers(paused_again) == [1, 2, 3, 4]
    finally:
        stack.set_fault("payment", error_rate=0.0)
        reset_payment_breaker(stack)

    retry(stack, run_id)
    completed = stack.wait_for_run(run_id)
    # The four failures stay in the breaker's window otherwise.
    reset_payment_breaker(stack)

    assert completed["status"] == "completed", completed
    assert action_numbers(completed) == [1, 2, 3, 4, 5]
    step = completed["steps"][0]
    assert step["attempts"] == 5
    assert step["request"]["idempotency_key"] == f"{run_id}:charge:action"
