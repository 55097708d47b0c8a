"""One headless Chromium per test worker: a launch costs about a second of CPU, and a new browser
context per test keeps the tests as separate as new browsers would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from tests.e2e.test_playground import CHROMIUM, FLAGS, sync_api

    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Any, **options: Any) -> Iterator[Any]:
    """A page in a fresh context (its own cookies and storage), closed afterwards."""
    context = browser.new_context(**options)
    try:
        yield context.new_page()
    finally:
        context.close()
