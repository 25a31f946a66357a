"""Playwright driving Debian's Chromium against the running control plane.

Playwright's own browser download is not used: the tests launch the system
Chromium at CHROMIUM_PATH (default /usr/bin/chromium), and each test saves
a screenshot under test-output/screenshots/.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from controlplane.launcher import BASE_DIR
from tests.stack import Stack

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = BASE_DIR / "test-output" / "screenshots"

# Flags that keep a headless Chromium from reaching out to the network on
# its own (updates, sync, field trials) on a machine with no way out.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; install Debian's chromium.")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def log_in(page: Page, stack: Stack) -> None:
    page.goto(stack.url("/login/"))
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(stack.url("/"))


@pytest.fixture
def page(
    browser: Browser, stack: Stack, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A logged-in page; its screenshot is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    log_in(opened, stack)
    yield opened
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    opened.screenshot(
        path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True
    )
    context.close()
