"""The order saga over real HTTP, a real Celery worker and real Redis.

Each test starts runs through the REST API of a control plane started by the
launcher, waits for the worker to finish them, and checks what the demo
services hold, not only the run's status.
"""

from decimal import Decimal
from typing import Any

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.stack


def order_input(
    product_id: str, quantity: int = 2, amount: str = "25.50"
) -> dict[str, Any]:
    return {
        "customer_id": "customer-1",
        "product_id": product_id,
        "quantity": quantity,
        "amount": amount,
    }


def product(stack: Stack, product_id: str) -> dict[str, Any]:
    products = stack.service_state("inventory")["products"]
    return dict(products[product_id])


def test_order_saga_completes(stack: Stack) -> None:
    charged_before = Decimal(stack.service_state("payment")["charged_total"])
    stock_before = product(stack, "sku-1")

    started = stack.start_run("order", order_input("sku-1", quantity=3))
    assert started["status"] == "pending"
    run = stack.wait_for_run(started["id"])

    assert run["status"] == "completed", run
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 5
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "confirmed"
    stock_after = product(stack, "sku-1")
    assert stock_after["reserved"] == stock_before["reserved"] + 3
    assert stock_after["available"] == stock_before["available"] - 3
    charged_after = Decimal(stack.service_state("payment")["charged_total"])
    assert charged_after - charged_before == Decimal("25.50")
    assert stack.service_state("shipping")["by_status"].get("scheduled", 0) >= 1


def test_payment_failure_compensates(stack: Stack) -> None:
    charged_before = Decimal(stack.service_state("payment")["charged_total"])
    stock_before = product(stack, "sku-2")
    shipments_before = stack.service_state("shipping")["by_status"]

    stack.set_fault("payment", error_rate=1.0)
    try:
        started = stack.start_run("order", order_input("sku-2", quantity=4))
        run = stack.wait_for_run(started["id"])
    finally:
        stack.set_fault("payment", error_rate=0.0)

    assert run["status"] == "compensated", run
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["create_order"]["status"] == "compensated"
    assert steps["reserve_inventory"]["status"] == "compensated"
    assert steps["charge_payment"]["status"] == "failed"
    assert steps["charge_payment"]["attempts"] == 3
    assert steps["schedule_shipment"]["status"] == "pending"
    order = stack.get(f"/demo/order/orders/{run['id']}/").json()
    assert order["status"] == "cancelled"
    assert product(stack, "sku-2") == stock_before
    charged_after = Decimal(stack.service_state("payment")["charged_total"])
    assert charged_after == charged_before
    assert stack.service_state("shipping")["by_status"] == shipments_before


def test_each_effect_applied_once(stack: Stack) -> None:
    for service in ("order", "inventory", "payment", "shipping"):
        assert stack.service_state(service)["duplicate_effects"] == 0, service
