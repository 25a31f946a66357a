"""Fault controls, compensation on the timeline and live breaker tiles."""

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in
from tests.stack import Stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]


def set_payment_error_rate(page: Page, stack: Stack, rate: str) -> None:
    page.goto(stack.url("/faults/"))
    page.fill("#id_payment_error_rate", rate)
    page.fill("#id_payment_latency_ms", "0")
    page.click("#fault-form-payment button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("payment")


def test_payment_fault_ends_compensated_with_bars(page: Page, stack: Stack) -> None:
    set_payment_error_rate(page, stack, "1.0")
    try:
        page.goto(stack.url("/runs/start/?saga=order"))
        page.fill("#id_customer_id", "browser-fault")
        page.fill("#id_product_id", "sku-5")
        page.fill("#id_quantity", "2")
        page.fill("#id_amount", "8.00")
        page.click("#start-form button[type=submit]")
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
        run_url = page.url

        expect(page.locator("#run-status")).to_have_text("compensated", timeout=60_000)
    finally:
        set_payment_error_rate(page, stack, "0")

    page.goto(run_url)
    compensations = page.locator(".timeline rect.bar.compensation")
    expect(compensations).to_have_count(2)
    failed = page.locator(".timeline rect.bar.action.outcome-failed")
    expect(failed).to_have_count(3)


def test_force_open_reaches_second_page(page: Page, stack: Stack) -> None:
    watcher = page.context.browser.new_context()  # type: ignore[union-attr]
    second = watcher.new_page()
    log_in(second, stack)
    second.goto(stack.url("/breakers/"))
    tile_state = second.locator("article[data-target='shipping'] .state")
    expect(tile_state).to_have_text("closed")

    page.goto(stack.url("/breakers/"))
    page.click("article[data-target='shipping'] button[data-action='force-open']")
    expect(page.locator("article[data-target='shipping'] .state")).to_have_text(
        "forced_open"
    )

    # The second page polls every second; allow it one poll and its request.
    expect(tile_state).to_have_text("forced_open", timeout=1_500)
    page.click("article[data-target='shipping'] button[data-action='reset']")
    expect(tile_state).to_have_text("closed", timeout=1_500)
    watcher.close()


def wait_for_span(stack: Stack, trace_id: str, name: str) -> None:
    """Wait for a span to be stored: the exporter writes about once a second."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = stack.get(f"/api/traces/{trace_id}/")
        if response.status_code == 200 and name in response.text:
            return
        time.sleep(0.3)
    raise AssertionError(f"span {name!r} of trace {trace_id} was never stored")


def test_trace_of_run_expands_span(page: Page, stack: Stack) -> None:
    run = stack.start_run(
        "order",
        {
            "customer_id": "trace-c",
            "product_id": "sku-1",
            "quantity": 1,
            "amount": "2.00",
        },
    )
    finished = stack.wait_for_run(run["id"])
    wait_for_span(stack, finished["trace_id"], "saga.step create_order")
    page.goto(stack.url(f"/runs/{run['id']}/"))

    page.click("#run-trace")
    page.wait_for_url(re.compile(r"/traces/[0-9a-f]{32}/$"))
    rows = page.locator("#trace-spans details")
    step = rows.filter(has_text="saga.step create_order").first
    step.locator("summary").click()

    expect(step).to_have_attribute("open", "")
    expect(step.locator(".span-attributes")).to_contain_text("saga.run_id")
    expect(step.locator(".span-attributes")).to_contain_text(run["id"])
