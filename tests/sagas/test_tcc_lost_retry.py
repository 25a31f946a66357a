"""A TCC run whose phase-two retry message is lost resumes within seconds.

The payment service fails every request, so the run aborts and its
payment cancel fails its first round. The worker holding the delayed
retry message is then killed: the message stays unacknowledged in the
broker for its one-hour visibility timeout, so it is lost for this run.
The sweeper's once-a-minute throttle for idle runs is set as if the run
had just been resumed. The run still resumes once its stored retry time
has passed, within a sweep interval, and aborts.
"""

import os
import signal
import time
from typing import Any

import pytest
import redis

from tests.stack import Stack

pytestmark = pytest.mark.stack

# sagas.sweeper.first_resume's key: set, it holds back an idle run's resume
# for a minute.
THROTTLE_KEY = "rcp:sweeper:resumed:{run_id}"


def payment_cancel(run: dict[str, Any]) -> dict[str, Any]:
    payment = next(p for p in run["participants"] if p["name"] == "payment")
    return dict(payment["phases"].get("cancel") or {})


def wait_for_failed_cancel(stack: Stack, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = stack.get(f"/api/runs/{run_id}/").json()
        if payment_cancel(run).get("status") in ("failed", "unknown"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"payment cancel of {run_id} never failed: {run}")


def test_lost_phase_two_retry_resumes_quickly(stack: Stack) -> None:
    order = {
        "customer_id": "c-lost-retry",
        "product_id": "sku-3",
        "quantity": 1,
        "amount": "4.00",
    }
    stack.set_fault("payment", error_rate=1.0)
    try:
        run_id = stack.start_run("order-tcc", order)["id"]
        redis.Redis.from_url(stack.redis_url).set(
            THROTTLE_KEY.format(run_id=run_id), "1", ex=120
        )
        wait_for_failed_cancel(stack, run_id)
        os.killpg(stack.pid("worker"), signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        stack.set_fault("payment", error_rate=0.0)
    reset = stack.post("/api/breakers/payment/reset/")
    assert reset.status_code == 200, reset.text

    run = stack.wait_for_run(run_id, timeout=50)
    took = time.monotonic() - killed_at

    assert run["status"] == "aborted", run
    assert run["decision"]["decision"] == "abort"
    assert payment_cancel(run)["status"] == "succeeded"
    # Retry due 2 s after the round, a 1 s sweep and a worker restart; the
    # throttle alone would have held the run back for a minute.
    assert took < 40, took
    log = (stack.data_dir / "stack.log").read_text(errors="replace")
    assert f"run={run_id} tcc phase two retry due; resuming" in log
