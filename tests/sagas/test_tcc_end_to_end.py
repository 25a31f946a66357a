"""The order-tcc transaction over real HTTP, a real Celery worker and Redis.

Each test starts a run through the REST API and checks, besides the run's
status and decision, what the demo services hold afterwards.
"""

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.stack import Stack

pytestmark = pytest.mark.stack


def order_input(product_id: str, quantity: int, amount: str) -> dict[str, Any]:
    return {
        "customer_id": "customer-tcc",
        "product_id": product_id,
        "quantity": quantity,
        "amount": amount,
    }


def product(stack: Stack, product_id: str) -> dict[str, Any]:
    return dict(stack.service_state("inventory")["products"][product_id])


def phases(run: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Map each participant to its phases' statuses."""
    return {
        p["name"]: {name: phase["status"] for name, phase in p["phases"].items()}
        for p in run["participants"]
    }


def wait_for_decision(stack: Stack, run_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        decision = stack.get(f"/api/runs/{run_id}/").json()["decision"]
        if decision and decision["decision"]:
            return str(decision["decision"])
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} has no decision after {timeout}s")


def test_all_tries_succeed_and_confirm(stack: Stack) -> None:
    stock_before = product(stack, "sku-3")
    payment_before = stack.service_state("payment")

    started = stack.start_run("order-tcc", order_input("sku-3", 2, "12.40"))
    run = stack.wait_for_run(started["id"])

    assert started["status"] == "pending"
    assert run["status"] == "committed", run
    assert run["decision"]["decision"] == "commit"
    assert phases(run) == {
        name: {"try": "succeeded", "confirm": "succeeded"}
        for name in ("order", "inventory", "payment")
    }
    stock_after = product(stack, "sku-3")
    assert stock_after["held"] == stock_before["held"]
    assert stock_after["available"] == stock_before["available"] - 2
    assert stock_after["on_hand"] == stock_before["on_hand"] - 2
    payment_after = stack.service_state("payment")
    captured = Decimal(payment_after["captured_total"]) - Decimal(
        payment_before["captured_total"]
    )
    assert captured == Decimal("12.40")
    assert payment_after["authorised_total"] == payment_before["authorised_total"]
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "confirmed"


def test_failing_payment_try_cancels_all(stack: Stack) -> None:
    stock_before = product(stack, "sku-4")
    payment_before = stack.service_state("payment")

    stack.set_fault("payment", error_rate=1.0)
    try:
        started = stack.start_run("order-tcc", order_input("sku-4", 5, "7.00"))
        decision = wait_for_decision(stack, started["id"])
    finally:
        # The cancels are retried until the payment service answers again.
        stack.set_fault("payment", error_rate=0.0)
    run = stack.wait_for_run(started["id"])

    assert decision == "abort"
    assert run["status"] == "aborted", run
    statuses = phases(run)
    assert statuses["order"] == {"try": "succeeded", "cancel": "succeeded"}
    assert statuses["inventory"] == {"try": "succeeded", "cancel": "succeeded"}
    assert statuses["payment"]["try"] in ("failed", "unknown")
    assert statuses["payment"]["cancel"] == "succeeded"
    assert product(stack, "sku-4") == stock_before
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "cancelled"
    payment_after = stack.service_state("payment")
    assert payment_after["captured_total"] == payment_before["captured_total"]
    assert payment_after["authorised_total"] == payment_before["authorised_total"]
    cancelled_first = payment_after["tcc_cancelled_before_try"]
    assert cancelled_first == payment_before["tcc_cancelled_before_try"] + 1


def test_late_try_after_abort_rejected(stack: Stack) -> None:
    stack.set_fault("payment", error_rate=1.0)
    try:
        started = stack.start_run("order-tcc", order_input("sku-5", 1, "2.00"))
        wait_for_decision(stack, started["id"])
    finally:
        stack.set_fault("payment", error_rate=0.0)
    stack.wait_for_run(started["id"])

    # The try the coordinator gave up on arrives after all, with a new key.
    late = requests.post(
        stack.url("/demo/payment/tcc/try/"),
        json={"reference": started["id"], "customer_id": "c", "amount": "2.00"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
        timeout=10,
    )

    assert late.status_code == 409, late.text
    assert late.json()["code"] == "cancelled_before_try"


def logged_in(stack: Stack) -> requests.Session:
    """Return a browser-like session logged in to the dashboard as demo."""
    session = requests.Session()
    session.get(stack.url("/login/"), timeout=10)
    response = session.post(
        stack.url("/login/"),
        data={
            "username": "demo",
            "password": "demo",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": stack.url("/login/")},
        timeout=10,
    )
    assert response.ok, response.text
    return session


def test_run_page_shows_phases(stack: Stack) -> None:
    started = stack.start_run("order-tcc", order_input("sku-1", 1, "1.00"))
    run = stack.wait_for_run(started["id"])
    page = logged_in(stack).get(stack.url(f"/runs/{run['id']}/"), timeout=10)

    assert page.status_code == 200
    assert 'id="tcc-decision"' in page.text
    assert 'data-participant="inventory" data-phase="confirm"' in page.text
    assert f"/traces/{run['trace_id']}/" in page.text
    assert '<rect class="bar confirm' in page.text


def test_each_tcc_effect_applied_once(stack: Stack) -> None:
    for service in ("order", "inventory", "payment"):
        state = stack.service_state(service)
        assert state["duplicate_effects"] == 0, service
        assert state["tcc_branches"]["tried"] == 0, service
    assert stack.service_state("inventory")["total_held"] == 0
