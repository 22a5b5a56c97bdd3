"""Headless Chromium for page tests: Debian's `chromium` driven by Playwright, nothing downloaded.

`.ci/run` installs the `chromium` package when it is missing; a machine without it fails here
with that instruction rather than skipping.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The system Chromium binary; fails the test with what to install when there is none."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium on PATH: install Debian's `chromium` package (.ci/run does)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module. Playwright's sync API keeps its event loop running
    on the main thread while open, so a longer-lived one would break later tests' asyncio.run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own context: no shared cookies or storage), 1280x900."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
