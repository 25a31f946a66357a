"""Starting the order saga from the dashboard and watching it finish."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.stack import Stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]


def test_started_run_reaches_completed_live(page: Page, stack: Stack) -> None:
    runs_page = page.context.new_page()
    runs_page.goto(stack.url("/runs/"))

    page.goto(stack.url("/runs/start/?saga=order"))
    page.fill("#id_customer_id", "browser-customer")
    page.fill("#id_product_id", "sku-3")
    page.fill("#id_quantity", "1")
    page.fill("#id_amount", "12.00")
    page.click("#start-form button[type=submit]")

    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    run_id = page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
    row = runs_page.locator(f"tr[data-run='{run_id}'] .badge").first
    expect(row).to_have_text("completed", timeout=10_000)
    runs_page.close()


def test_invalid_form_input_names_field(page: Page, stack: Stack) -> None:
    page.goto(stack.url("/runs/start/?saga=order"))
    page.fill("#id_customer_id", "c")
    page.fill("#id_product_id", "sku-1")
    page.fill("#id_quantity", "0")
    page.fill("#id_amount", "1.00")
    page.click("#start-form button[type=submit]")

    expect(page.locator(".field-error")).to_contain_text("quantity")
    expect(page.locator(".field-error")).to_contain_text("greater than or equal to 1")
