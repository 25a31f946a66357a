"""The state endpoints count records, money and stock; seed and reset."""

from rest_framework.test import APIClient

from demo.models import FaultSetting, Product
from demo.services import reset_demo_data, seed_demo_data
from tests.demo.conftest import PAYMENT, post, state


def test_payment_totals(client: APIClient) -> None:
    post(client, "/demo/payment/payments/", PAYMENT)
    post(client, "/demo/payment/payments/", {**PAYMENT, "reference": "run-2"})
    post(client, "/demo/payment/payments/run-2/refund/")

    summary = state(client, "payment")

    assert summary["charged_total"] == "25.50"
    assert summary["refunded_total"] == "25.50"
    assert summary["by_status"] == {"charged": 1, "refunded": 1}
    assert summary["effects_applied"] == 3
    assert summary["duplicate_effects"] == 0


def test_empty_state_lists_every_status(client: APIClient) -> None:
    summary = state(client, "shipping")

    assert summary["by_status"] == {"scheduled": 0, "cancelled": 0}
    assert summary["total"] == 0


def test_inventory_lists_seeded_products(client: APIClient) -> None:
    products = state(client, "inventory")["products"]

    assert products["sku-1"] == {
        "on_hand": 1000,
        "reserved": 0,
        "held": 0,
        "available": 1000,
    }
    assert products["sku-empty"]["available"] == 0
    assert set(products) == {f"sku-{n}" for n in range(1, 6)} | {"sku-empty"}


def test_seed_keeps_existing_rows(client: APIClient) -> None:
    post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r", "product_id": "sku-1", "quantity": 4},
    )
    FaultSetting.objects.filter(service="order").update(error_rate=0.5)

    seed_demo_data()

    assert Product.objects.get(product_id="sku-1").available == 996
    assert FaultSetting.objects.get(service="order").error_rate == 0.5
    assert FaultSetting.objects.count() == 4


def test_reset_restores_stock_and_faults(client: APIClient) -> None:
    post(
        client,
        "/demo/inventory/reservations/",
        {"reference": "r", "product_id": "sku-1", "quantity": 4},
    )
    FaultSetting.objects.filter(service="order").update(latency_ms=10)

    reset_demo_data()

    summary = state(client, "inventory")
    assert summary["total"] == 0
    assert summary["effects_applied"] == 0
    assert summary["products"]["sku-1"]["available"] == 1000
    assert FaultSetting.objects.get(service="order").latency_ms == 0
