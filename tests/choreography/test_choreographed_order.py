"""The choreographed order saga over a real Celery worker, Redis and HTTP.

Each test starts an ``order-choreography`` run through the REST API of a
control plane started by the launcher, waits until the services' events
finish it, and checks what each service stores through its ``state/``
endpoint and records, not only the run's status.
"""

import re
import time
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.sagas.test_order_saga_end_to_end import order_input, product
from tests.stack import Stack

pytestmark = pytest.mark.stack

SAGA = "order-choreography"
COMPLETED_EVENTS = [
    "OrderCreated",
    "InventoryReserved",
    "PaymentCompleted",
    "ShipmentScheduled",
    "OrderConfirmed",
]


def event_types(run: dict[str, Any]) -> list[str]:
    return [event["event_type"] for event in run["events"]]


def outbox_events(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    response = stack.get("/api/outbox/events/", params={"correlation_id": run_id})
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def test_choreography_completes(stack: Stack) -> None:
    charged_before = Decimal(stack.service_state("payment")["charged_total"])
    stock_before = product(stack, "sku-3")

    started = stack.start_run(SAGA, order_input("sku-3", quantity=3))
    assert started["status"] == "pending"
    assert started["kind"] == "choreography"
    run = stack.wait_for_run(started["id"])

    assert run["status"] == "completed", run
    assert event_types(run) == COMPLETED_EVENTS
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "confirmed"
    stock_after = product(stack, "sku-3")
    assert stock_after["reserved"] == stock_before["reserved"] + 3
    assert stock_after["available"] == stock_before["available"] - 3
    charged_after = Decimal(stack.service_state("payment")["charged_total"])
    assert charged_after - charged_before == Decimal("25.50")
    shipment = stack.get(f"/demo/shipping/shipments/{run['id']}/").json()
    assert shipment["status"] == "scheduled"
    history = [change["to_status"] for change in run["history"]]
    assert history == ["pending", "running", "completed"]


def test_events_carry_the_run_trace(stack: Stack) -> None:
    run = stack.wait_for_run(stack.start_run(SAGA, order_input("sku-4"))["id"])

    assert run["status"] == "completed", run
    for event in run["events"]:
        assert event["traceparent"].split("-")[1] == run["trace_id"], event
    page = dashboard_page(stack, f"/runs/{run['id']}/")
    links = re.findall(r'class="hop-trace" href="([^"]+)"', page)
    assert len(links) == 5
    assert all(link.startswith(f"/traces/{run['trace_id']}/#span-") for link in links)
    # Each hop has a publish and a consume span in the run's trace.
    names = span_names(stack, run["trace_id"], expected=5)
    assert sum(name.startswith("event.publish ") for name in names) >= 5
    assert sum(name.startswith("event.consume ") for name in names) >= 5


def dashboard_page(stack: Stack, path: str) -> str:
    """Log in to the dashboard as the demo user and return a page's HTML."""
    browser = requests.Session()
    login = browser.get(stack.url("/login/"), timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert token is not None, login.text[:2000]
    browser.post(
        stack.url("/login/"),
        data={"username": "demo", "password": "demo", "csrfmiddlewaretoken": token[1]},
        headers={"Referer": stack.url("/login/")},
        timeout=10,
    )
    page = browser.get(stack.url(path), timeout=10)
    assert page.status_code == 200, page.text[:2000]
    assert page.url == stack.url(path), page.url
    return page.text


def span_names(stack: Stack, trace_id: str, expected: int) -> list[str]:
    """Return a trace's span names once it holds ``expected`` of each event span.

    Each process exports its spans on its own schedule, so the publish and
    consume spans of one hop may be stored seconds apart.
    """
    names: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = stack.get(f"/api/traces/{trace_id}/")
        if response.status_code == 200:
            names = collect_names(response.json()["spans"])
            kinds = ("event.publish ", "event.consume ")
            if all(
                sum(name.startswith(kind) for name in names) >= expected
                for kind in kinds
            ):
                return names
        time.sleep(0.5)
    return names


def collect_names(nodes: list[dict[str, Any]]) -> list[str]:
    names = []
    for node in nodes:
        names.append(node["name"])
        names.extend(collect_names(node["children"]))
    return names


def test_payment_failure_compensates(stack: Stack) -> None:
    charged_before = Decimal(stack.service_state("payment")["charged_total"])
    refunded_before = Decimal(stack.service_state("payment")["refunded_total"])
    stock_before = product(stack, "sku-5")
    shipments_before = stack.service_state("shipping")["by_status"]

    stack.set_fault("payment", error_rate=1.0)
    try:
        run = stack.wait_for_run(stack.start_run(SAGA, order_input("sku-5", 4))["id"])
    finally:
        stack.set_fault("payment", error_rate=0.0)

    assert run["status"] == "compensated", run
    assert event_types(run) == [
        "OrderCreated",
        "InventoryReserved",
        "PaymentFailed",
        "InventoryReleased",
        "OrderCancelled",
    ]
    assert "gave up after 3 attempts" in run["error"]
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "cancelled"
    reservation = stack.get(f"/demo/inventory/reservations/{run['id']}/").json()
    assert reservation["status"] == "released"
    assert product(stack, "sku-5") == stock_before
    payment = stack.get(f"/demo/payment/payments/{run['id']}/")
    assert payment.status_code == 404
    payment_state = stack.service_state("payment")
    assert Decimal(payment_state["charged_total"]) == charged_before
    assert Decimal(payment_state["refunded_total"]) == refunded_before
    assert stack.service_state("shipping")["by_status"] == shipments_before
    history = [change["to_status"] for change in run["history"]]
    assert history == ["pending", "running", "compensating", "compensated"]


def test_stock_out_cancels_order(stack: Stack) -> None:
    run = stack.wait_for_run(stack.start_run(SAGA, order_input("sku-empty"))["id"])

    assert run["status"] == "compensated", run
    assert event_types(run) == [
        "OrderCreated",
        "InventoryReservationFailed",
        "OrderCancelled",
    ]
    assert "units available" in run["error"]
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "cancelled"
    reservation = stack.get(f"/demo/inventory/reservations/{run['id']}/")
    assert reservation.status_code == 404


def test_relay_crash_publishes_once(stack: Stack) -> None:
    crash_file = stack.arm_relay_crash()

    run = stack.wait_for_run(stack.start_run(SAGA, order_input("sku-1"))["id"])

    assert not crash_file.exists(), "the relay never reached its crash point"
    assert run["status"] == "completed", run
    assert event_types(run) == COMPLETED_EVENTS
    for event in outbox_events(stack, run["id"]):
        assert event["status"] == "sent", event
        assert event["publish_attempts"] == 1, event
        consumers = {row["consumer"]: row for row in event["consumed_by"]}
        assert sorted(consumers) == sorted(event["subscribers"]), event
        assert all(row["duplicates"] == 0 for row in consumers.values()), event


def test_duplicate_event_consumed_once(stack: Stack) -> None:
    run = stack.wait_for_run(stack.start_run(SAGA, order_input("sku-2"))["id"])
    assert run["status"] == "completed", run
    payment_before = stack.service_state("payment")
    reserved = next(
        event
        for event in outbox_events(stack, run["id"])
        if event["event_type"] == "InventoryReserved"
    )

    response = stack.post(f"/api/outbox/events/{reserved['event_id']}/redeliver/")
    assert response.status_code == 202, response.text
    consumers = wait_for_duplicates(stack, run["id"], reserved["event_id"])

    assert consumers["payment"]["duplicates"] == 1
    assert consumers["sagas"]["duplicates"] == 1
    payment_after = stack.service_state("payment")
    assert payment_after["charged_total"] == payment_before["charged_total"]
    assert payment_after["effects_applied"] == payment_before["effects_applied"]
    assert payment_after["duplicate_effects"] == 0
    again = stack.get(f"/api/runs/{run['id']}/").json()
    assert again["status"] == "completed"
    assert len(again["events"]) == 5
    summary = {
        row["service"]: row for row in stack.get("/api/outbox/").json()["services"]
    }
    assert summary["payment"]["duplicates_ignored"] >= 1


def wait_for_duplicates(
    stack: Stack, run_id: str, event_id: str
) -> dict[str, dict[str, Any]]:
    """Return the event's consumers once each has ignored a duplicate."""
    consumers: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        event = next(
            e for e in outbox_events(stack, run_id) if e["event_id"] == event_id
        )
        consumers = {row["consumer"]: row for row in event["consumed_by"]}
        if all(row["duplicates"] for row in consumers.values()):
            return consumers
        time.sleep(0.3)
    raise AssertionError(f"redelivery of {event_id} not consumed: {consumers}")


def test_redeliver_sets_redelivered_at(stack: Stack) -> None:
    run = stack.wait_for_run(stack.start_run(SAGA, order_input("sku-2"))["id"])
    assert run["status"] == "completed", run
    created = next(
        event
        for event in outbox_events(stack, run["id"])
        if event["event_type"] == "OrderCreated"
    )
    assert created["redelivered_at"] is None

    response = stack.post(f"/api/outbox/events/{created['event_id']}/redeliver/")
    assert response.status_code == 202, response.text
    stamped = response.json()["redelivered_at"]

    assert stamped is not None
    assert stamped >= created["sent_at"]
    listed = next(
        event
        for event in outbox_events(stack, run["id"])
        if event["event_id"] == created["event_id"]
    )
    assert listed["redelivered_at"] == stamped
