"""polybot.testing: what the scaffolded test and users' own tests need."""

from __future__ import annotations

from pathlib import Path

import fastapi_poe as fp
import pytest

from polybot.errors import PolybotError
from polybot.testing import Project, load_project

HOOKS = '''\
async def respond(request, bot):
    yield "thinking... "
    async for event in bot.complete(request):
        yield event
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "bots/Alpha").mkdir(parents=True)
    (tmp_path / "bots/Alpha/bot.toml").write_text(
        'provider = "echo"\n[vars]\ntone = "dry"\n[poe]\nsuggested_replies = true\n')
    (tmp_path / "bots/Alpha/system.md.j2").write_text("You are {{ bot.name }}, {{ vars.tone }}.")
    (tmp_path / "bots/Hooked").mkdir(parents=True)
    (tmp_path / "bots/Hooked/bot.toml").write_text('provider = "echo"\n')
    (tmp_path / "bots/Hooked/system.md.j2").write_text("S")
    (tmp_path / "bots/Hooked/hooks.py").write_text(HOOKS)
    return tmp_path


def test_ask_returns_the_text_and_every_event(project: Path) -> None:
    bots = load_project(project)
    assert isinstance(bots, Project) and bots.bots == ["Alpha", "Hooked"]
    reply = bots.ask("Alpha", "hello", history=[("user", "hi"), ("bot", "hi!")])
    assert reply.ok and reply.error is None and reply.text == "hello"
    assert isinstance(reply.events[0], fp.MetaResponse)
    assert bots.ask("Hooked", "hey").text == "thinking... hey"
    assert bots.prompt("Alpha") == "You are Alpha, dry."


def test_an_error_event_is_the_replys_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (project / "bots/Alpha/bot.toml").write_text('provider = "openai"\n[vars]\ntone = "dry"\n')
    reply = load_project(project).ask("Alpha", "hello")
    assert not reply.ok and reply.error is not None and "OPENAI_API_KEY" in reply.error.text


def test_a_broken_project_fails_with_every_located_problem(project: Path) -> None:
    (project / "bots/Alpha/bot.toml").write_text('provider = "echo"\ntemperature = 9\n')
    with pytest.raises(PolybotError) as error:
        load_project(project)
    assert str(error.value) == "bots/Alpha/bot.toml:2: temperature: must be at most 2, got 9"


def test_a_misspelt_bot_name_suggests_the_right_one(project: Path) -> None:
    with pytest.raises(KeyError, match="no bot named 'Alpah' \\(did you mean 'Alpha'\\?\\)"):
        load_project(project).ask("Alpah", "hi")


async def test_async_tests_use_ask_async(project: Path) -> None:
    bots = load_project(project)
    try:
        assert (await bots.ask_async("Alpha", "async hello")).text == "async hello"
    finally:
        await bots.aclose()
