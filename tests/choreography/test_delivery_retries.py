"""Retries of a choreographed run's start and of its event deliveries.

Both are Celery retries in a real worker. They must go on as long as the
docs say: the start every 2 s until the order service answers, and a
compensation up to ``RETRY_ATTEMPTS`` (8) times, not Celery's default cap
of 3 retries.
"""

import time
from typing import Any

import pytest

from demo.consumers import RETRY_ATTEMPTS
from tests.sagas.test_order_saga_end_to_end import order_input
from tests.stack import Stack

pytestmark = pytest.mark.stack

SAGA = "order-choreography"
# The sweeper places a pending run's order again only after 30 s, so a run
# that leaves pending sooner was started by the task's own retries.
SWEEPER_RESUME_SECONDS = 30.0


def wait_for_status(
    stack: Stack, run_id: str, leave: str, timeout: float
) -> dict[str, Any]:
    """Return the run once its status is no longer ``leave``, or fail at timeout."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = stack.get(f"/api/runs/{run_id}/").json()
        if run["status"] != leave:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {leave} after {timeout}s: {run}")


def test_start_retried_past_three(stack: Stack) -> None:
    stack.set_fault("order", error_rate=1.0)
    started_at = time.monotonic()
    try:
        run = stack.start_run(SAGA, order_input("sku-2", quantity=1))
        # Four tries, the first and Celery's default 3 retries, fit in these
        # 10 s, so only a fifth try can place the order.
        time.sleep(10)
    finally:
        stack.set_fault("order", error_rate=0.0)

    try:
        budget = SWEEPER_RESUME_SECONDS - 4 - (time.monotonic() - started_at)
        moved = wait_for_status(stack, run["id"], "pending", timeout=budget)
    finally:
        # The failed tries may have opened the order breaker, and later
        # tests need it closed.
        stack.post("/api/breakers/order/reset/")

    assert moved["status"] != "pending"
    assert stack.wait_for_run(run["id"])["status"] == "completed"


def test_release_retried_past_four(stack: Stack) -> None:
    log_start = stack_log_size(stack)
    stack.set_fault("payment", error_rate=1.0)
    started_at = time.monotonic()
    try:
        run = stack.start_run(SAGA, order_input("sku-4", quantity=1))
        wait_for_reservation(stack, run["id"])
        # Payment fails its three tries in about 1.5 s. The stock release
        # that follows then fails for about 9 s, which takes five tries (at
        # 0, 0.5, 1.5, 3.5 and 7.5 s), so the sixth, at 11.5 s, succeeds.
        stack.set_fault("inventory", error_rate=1.0)
        time.sleep(9)
    finally:
        stack.set_fault("inventory", error_rate=0.0)
        stack.set_fault("payment", error_rate=0.0)

    # Without the retries, only the relay's redelivery after 30 s would
    # release the stock.
    budget = SWEEPER_RESUME_SECONDS - (time.monotonic() - started_at)
    finished = stack.wait_for_run(run["id"], timeout=budget)
    assert finished["status"] == "compensated", finished

    log = stack_log(stack, log_start)
    release_retries = [
        line
        for line in log.splitlines()
        if "retry: Retry in" in line and "the inventory service fails" in line
    ]
    assert len(release_retries) >= 4, "\n".join(release_retries)
    assert len(release_retries) < RETRY_ATTEMPTS
    assert "UnpickleableExceptionWrapper" not in log


def wait_for_reservation(stack: Stack, run_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = stack.get(f"/demo/inventory/reservations/{run_id}/")
        if response.status_code == 200 and response.json()["status"] == "reserved":
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} reserved no stock within 20 s")


def stack_log_size(stack: Stack) -> int:
    return (stack.data_dir / "stack.log").stat().st_size


def stack_log(stack: Stack, start: int) -> str:
    with (stack.data_dir / "stack.log").open("rb") as log:
        log.seek(start)
        return log.read().decode(errors="replace")
