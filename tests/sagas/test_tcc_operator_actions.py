"""An operator retries or resolves a TCC run that ended needs_attention.

The stack's phase-two budget is 2 s. The payment service fails every
request, so its try fails, the decision is abort, and its cancel still
fails when the budget is spent: the run ends needs_attention. Retrying
phase two once the service is back cancels the payment under the same
decision and key; resolving records the operator's note instead.
"""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sagas.test_tcc_end_to_end import logged_in
from tests.stack import Stack, private_stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp_dir: Path = tmp_path_factory.mktemp("tcc-budget-stack")
    with private_stack(tmp_dir, {"TCC_PHASE_TWO_BUDGET_SECONDS": "2"}) as stack:
        yield stack


def order_input(product_id: str) -> dict[str, Any]:
    return {
        "customer_id": f"c-{uuid.uuid4().hex[:6]}",
        "product_id": product_id,
        "quantity": 1,
        "amount": "3.00",
    }


def payment_phases(run: dict[str, Any]) -> dict[str, Any]:
    payment = next(p for p in run["participants"] if p["name"] == "payment")
    return dict(payment["phases"])


def run_needing_attention(stack: Stack, product_id: str) -> dict[str, Any]:
    """Start an order-tcc run while payment is down; return it needs_attention."""
    stack.set_fault("payment", error_rate=1.0)
    try:
        started = stack.start_run("order-tcc", order_input(product_id))
        run = stack.wait_for_run(started["id"], timeout=120)
    finally:
        stack.set_fault("payment", error_rate=0.0)
    # The failures opened the payment breaker; close it for what follows.
    reset = stack.post("/api/breakers/payment/reset/")
    assert reset.status_code == 200, reset.text
    assert run["status"] == "needs_attention", run
    assert run["needs_attention"] is True
    return run


def test_retry_phase_two_cancels_under_same_decision(budget_stack: Stack) -> None:
    stack = budget_stack
    stock_before = stack.service_state("inventory")["products"]["sku-3"]
    stuck = run_needing_attention(stack, "sku-3")
    run_id = stuck["id"]
    assert stuck["decision"]["decision"] == "abort"
    assert payment_phases(stuck)["cancel"]["status"] != "succeeded"
    key = payment_phases(stuck)["cancel"]["idempotency_key"]

    response = stack.post(f"/api/runs/{run_id}/retry/")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelling"
    assert response.json()["needs_attention"] is False
    run = stack.wait_for_run(run_id)
    assert run["status"] == "aborted", run
    assert run["decision"]["decision"] == "abort"
    assert run["needs_attention"] is False
    cancel = payment_phases(run)["cancel"]
    assert cancel["status"] == "succeeded"
    assert cancel["idempotency_key"] == key == f"{run_id}:payment:cancel"
    reasons = [change["reason"] for change in run["history"]]
    assert "phase two (cancel) retried by demo" in reasons
    assert stack.service_state("inventory")["products"]["sku-3"] == stock_before
    for service in ("order", "inventory", "payment"):
        assert stack.service_state(service)["duplicate_effects"] == 0, service


def test_resolve_keeps_status_and_blocks_retry(budget_stack: Stack) -> None:
    stack = budget_stack
    run_id = run_needing_attention(stack, "sku-1")["id"]

    missing = stack.post(f"/api/runs/{run_id}/resolve/", json={})
    resolved = stack.post(
        f"/api/runs/{run_id}/resolve/",
        json={"note": "voided the authorisation in the payment console"},
    )
    again = stack.post(f"/api/runs/{run_id}/retry/")

    assert missing.status_code == 400, missing.text
    assert missing.json()["errors"][0]["field"] == "note"
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["status"] == "needs_attention"
    assert body["needs_attention"] is False
    assert body["history"][-1]["reason"] == (
        "resolved by demo: voided the authorisation in the payment console"
    )
    assert body["decision"]["decision"] == "abort"
    assert again.status_code == 409, again.text
    assert "already resolved" in again.json()["detail"]
    # Nothing drives a resolved run: its cancel stays as it was.
    time.sleep(3)
    run = stack.get(f"/api/runs/{run_id}/").json()
    assert run["status"] == "needs_attention"
    assert payment_phases(run)["cancel"]["status"] != "succeeded"


def test_run_page_offers_tcc_actions(budget_stack: Stack) -> None:
    stack = budget_stack
    run_id = run_needing_attention(stack, "sku-2")["id"]
    page = logged_in(stack).get(stack.url(f"/runs/{run_id}/"), timeout=10)

    assert page.status_code == 200
    assert 'id="retry-phase-two"' in page.text
    assert "Retry phase two (cancel)" in page.text
    assert 'id="resolve-run"' in page.text
