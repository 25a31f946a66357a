"""A worker killed in the middle of a step: the run still finishes once.

The launcher starts a new worker; the step's lease expires and the sweeper
in Celery beat hands the step to the new worker, which sends the same
Idempotency-Key, so the service applies the reservation once.
"""

import os
import signal
import time
from typing import Any

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.stack


def wait_for_step(stack: Stack, run_id: str, name: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = stack.get(f"/api/runs/{run_id}/").json()
        steps = {s["name"]: s for s in run["steps"]}
        if steps[name]["status"] == status:
            return dict(steps[name])
        time.sleep(0.1)
    raise AssertionError(f"step {name} never became {status}")


def test_killed_worker_step_resumes_once(stack: Stack) -> None:
    before = stack.service_state("inventory")["effects_applied"]
    stack.set_fault("inventory", error_rate=0.0, latency_ms=2500)
    try:
        started = stack.start_run(
            "order",
            {
                "customer_id": "c-kill",
                "product_id": "sku-4",
                "quantity": 1,
                "amount": "3.00",
            },
        )
        wait_for_step(stack, started["id"], "reserve_inventory", "running")
        os.killpg(stack.pid("worker"), signal.SIGKILL)
    finally:
        stack.set_fault("inventory", error_rate=0.0, latency_ms=0)

    run = stack.wait_for_run(started["id"], timeout=90)

    assert run["status"] == "completed", run
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["reserve_inventory"]["action_claims"] == 2
    assert stack.service_state("inventory")["effects_applied"] == before + 1
    assert stack.service_state("inventory")["duplicate_effects"] == 0
