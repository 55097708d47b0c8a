"""One headless Chromium per test module: a launch costs about a second of CPU, and a new browser
context per test keeps the tests as separate as new browsers would. Not per session: while the
sync Playwright is open its event loop is the thread's, so any later asyncio test on that worker
would fail ("Cannot run the event loop while another loop is running")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.e2e.test_playground import CHROMIUM, FLAGS, sync_api

    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
