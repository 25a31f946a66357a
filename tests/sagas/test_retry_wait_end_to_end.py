"""A long retry wait parks the step in the database, with a real worker.

The payment service answers 503 to every request, and the step's retry
backs off 4 s, longer than SAGA_MAX_INLINE_WAIT (2 s): the worker stores
the step as waiting and is free meanwhile; a delayed message resumes the
step with its second and last attempt.
"""

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from tests.stack import TERMINAL, Stack

pytestmark = pytest.mark.stack


def charge_saga(name: str) -> dict[str, Any]:
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
                        "customer_id": "customer-wait",
                        "amount": "3.00",
                    },
                },
                "compensation": {
                    "method": "POST",
                    "path": "/payments/{{run.id}}/refund/",
                },
                "retry": {
                    "max_attempts": 2,
                    "initial_interval": 4,
                    "jitter": "none",
                },
            }
        ],
    }


def statuses_until_terminal(
    stack: Stack, run_id: str
) -> tuple[dict[str, Any], set[str]]:
    """Poll the run, collecting every status its step showed on the way."""
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = stack.get(f"/api/runs/{run_id}/").json()
        seen.add(run["steps"][0]["status"])
        if run["status"] in TERMINAL:
            return run, seen
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not terminal: {run}")


def test_long_retry_wait_is_parked_and_resumed(stack: Stack) -> None:
    name = f"charge-wait-{uuid.uuid4().hex[:8]}"
    created = stack.post("/api/sagas/", json=charge_saga(name))
    assert created.status_code == 201, created.text
    charged_before = Decimal(stack.service_state("payment")["charged_total"])

    stack.set_fault("payment", error_rate=1.0)
    try:
        started = stack.start_run(name, {})
        run, seen = statuses_until_terminal(stack, started["id"])
    finally:
        stack.set_fault("payment", error_rate=0.0)

    step = run["steps"][0]
    assert "waiting" in seen, seen
    assert run["status"] == "compensated", run
    assert step["status"] == "failed"
    numbers = [a["number"] for a in step["attempt_log"] if a["kind"] == "action"]
    assert numbers == [1, 2]
    assert "postponed by 4.0 s" in " ".join(
        change["reason"] for change in step["history"]
    )
    # Both attempts were refused with 503 (not processed): nothing charged,
    # so nothing needed undoing.
    charged_after = Decimal(stack.service_state("payment")["charged_total"])
    assert charged_after == charged_before
