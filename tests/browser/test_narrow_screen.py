"""On a phone-sized screen the navigation wraps instead of overflowing."""

import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import log_in
from tests.stack import Stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]


WIDTH = 320  # the narrowest phones in common use


@pytest.mark.parametrize("path", ["/", "/runs/", "/breakers/", "/idempotency/"])
def test_navigation_fits_narrow_screen(
    browser: Browser, stack: Stack, path: str
) -> None:
    width = WIDTH
    context = browser.new_context(viewport={"width": width, "height": 700})
    page = context.new_page()
    try:
        log_in(page, stack)
        page.goto(stack.url(path))
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"page is {overflow}px wider than {width}px"
        for link in page.locator("header.top nav a").all():
            box = link.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= width, link.inner_text()
    finally:
        context.close()
