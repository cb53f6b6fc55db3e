"""Headless Chromium for the browser tests, through Playwright's sync API (a pytest plugin loaded
by ``tests/conftest.py``, so every folder's browser tests share one Playwright: two sync Playwrights
alive at once refuse to run).

Fixtures: ``browser`` (one Chromium for the test session, with a fresh throw-away profile), and per
test a fresh ``context`` (no cookies or storage carried over between tests) and a ``page`` in it.

Tests using them are plain ``def`` tests: Playwright's sync API runs its own event loop, which must
not meet the trio loop pytest-trio runs ``async def`` tests in. Chromium is Debian's
(``tools/ensure-chromium.sh``, also ``make browser``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Sandbox-free (containers), quiet, and offline apart from the pages the tests open.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A Playwright ``Browser``: headless Chromium, launched once (Playwright gives it a fresh
    temporary user data dir, removed when it closes)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run tools/ensure-chromium.sh (or make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh ``BrowserContext``: its own cookies, storage and cache."""
    ctx = browser.new_context()
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    """A new tab in the test's own context."""
    return context.new_page()
