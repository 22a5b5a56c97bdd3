"""Shared pytest set-up: fixture plugins from tests/support (one module per real component)."""

from __future__ import annotations

pytest_plugins: list[str] = [
    "tests.support.proxy",
    "tests.support.scripted",
    "tests.support.agents_cli",
    "tests.support.postgres",
    "tests.support.browser",
]
