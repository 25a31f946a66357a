"""TCC runs recover from a worker lost after the decision and from a slow try.

The stack's workers run with ``TCC_CRASH_AFTER_DECISION=1``, so each one
exits the moment it has stored a decision, before any confirm is sent,
and with a try timeout of 2 s.
Celery replaces the lost pool process, the lease expires, the sweeper enqueues
the coordinator again, and the new worker finds the decision and confirms
every participant.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack, private_stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def crashing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp_dir: Path = tmp_path_factory.mktemp("crash-stack")
    env = {"TCC_CRASH_AFTER_DECISION": "1", "TCC_TRY_TIMEOUT_SECONDS": "2"}
    with private_stack(tmp_dir, env) as stack:
        yield stack


def test_phase_two_resumes_after_crash(crashing_stack: Stack) -> None:
    stack = crashing_stack
    stock_before = stack.service_state("inventory")["products"]["sku-2"]

    started = stack.start_run(
        "order-tcc",
        {
            "customer_id": "c-crash",
            "product_id": "sku-2",
            "quantity": 3,
            "amount": "9.00",
        },
    )
    run = stack.wait_for_run(started["id"], timeout=120)

    assert run["status"] == "committed", run
    assert run["decision"]["decision"] == "commit"
    # One claim stored the decision and died; a later one confirmed.
    assert run["decision"]["claims"] >= 2
    log = (stack.data_dir / "stack.log").read_text()
    assert "TCC_CRASH_AFTER_DECISION is set: the worker exits now" in log
    for participant in run["participants"]:
        assert participant["phases"]["confirm"]["status"] == "succeeded", participant
    stock_after = stack.service_state("inventory")["products"]["sku-2"]
    assert stock_after["available"] == stock_before["available"] - 3
    assert stock_after["held"] == 0
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "confirmed"
    for service in ("order", "inventory", "payment"):
        assert stack.service_state(service)["duplicate_effects"] == 0, service


def test_phase_one_timeout_aborts(crashing_stack: Stack) -> None:
    stack = crashing_stack
    stock_before = stack.service_state("inventory")["products"]["sku-5"]

    # The inventory try takes 2.5 s, so the payment try would start after
    # the 2 s try timeout: the coordinator aborts in place of sending it.
    stack.set_fault("inventory", error_rate=0.0, latency_ms=2500)
    try:
        started = stack.start_run(
            "order-tcc",
            {
                "customer_id": "c-slow",
                "product_id": "sku-5",
                "quantity": 1,
                "amount": "4.00",
            },
        )
        run = stack.wait_for_run(started["id"], timeout=120)
    finally:
        stack.set_fault("inventory", error_rate=0.0, latency_ms=0)

    assert run["status"] == "aborted", run
    assert "timed out" in run["decision"]["decision_reason"]
    phases = {p["name"]: p["phases"] for p in run["participants"]}
    assert phases["inventory"]["try"]["status"] == "succeeded"
    assert phases["payment"]["try"]["status"] == "pending"
    assert phases["payment"]["try"]["attempts"] == 0
    for name, participant_phases in phases.items():
        assert participant_phases["cancel"]["status"] == "succeeded", name
    assert stack.service_state("inventory")["products"]["sku-5"] == stock_before
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "cancelled"
