"""The dev playground in a real browser: Playwright driving Debian's headless Chromium.

Screenshots are saved in this test's tmp_path (pytest keeps the last runs) for review.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import new_page, polybot_process

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name, toml, prompt in [("Echo", 'provider = "echo"\n[poe]\nintroduction_message = "Say something"\n',
                                "You are the echo bot."),
                               ("Poet", 'provider = "echo"\n',
                                "You write poems about {{ vars.topic | default('sea') }}.")]:
        (root / "bots" / name).mkdir(parents=True)
        (root / "bots" / name / "bot.toml").write_text(toml)
        (root / "bots" / name / "system.md.j2").write_text(prompt)
    return root


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from new_page(browser, viewport={"width": 1280, "height": 800})


def test_chat_prompt_and_live_build_errors(project: Path, page: Any, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with polybot_process("dev", project=project) as (base, _):
        page.goto(base + "/")
        page.locator(".bot[data-bot=Echo]").click()
        page.locator(".msg.bot", has_text="Say something").wait_for()
        page.locator("#prompt", has_text="You are the echo bot.").wait_for()

        page.fill("#input", "hello from the browser")
        page.click("button[type=submit]")
        page.locator(".msg.bot", has_text="hello from the browser").wait_for()
        page.screenshot(path=str(shots / "chat.png"))

        (project / "bots/Poet/system.md.j2").write_text("Broken {% if %}")
        overlay = page.locator("#overlay")
        overlay.wait_for(state="visible")
        assert "bots/Poet/system.md.j2:1: template syntax error" in page.locator("#errors").inner_text()
        page.screenshot(path=str(shots / "error-overlay.png"))

        (project / "bots/Poet/system.md.j2").write_text("You write poems about rivers.")
        overlay.wait_for(state="hidden")
        page.locator(".bot[data-bot=Poet]").click()
        page.locator("#prompt", has_text="You write poems about rivers.").wait_for()
        page.screenshot(path=str(shots / "fixed.png"))
    assert all((shots / f).stat().st_size > 1000 for f in ("chat.png", "error-overlay.png", "fixed.png"))


def test_playground_is_refused_for_other_host_names(project: Path) -> None:
    """The page answers loopback names only: a DNS-rebound name (via Host) gets 403."""
    with polybot_process("dev", project=project) as (base, _):
        assert httpx.get(base + "/_polybot/state").status_code == 200
        forbidden = httpx.get(base + "/_polybot/state", headers={"host": "example.test"})
        assert forbidden.status_code == 403
        assert "--allow-host" in forbidden.json()["detail"]
