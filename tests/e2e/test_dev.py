"""`polybot dev` as a user runs it: live reload on edit, break, fix, add and remove."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import fastapi_poe as fp
import httpx
import pytest

from tests.e2e.helpers import ask, polybot_process


def write_bot(root: Path, name: str, prompt: str) -> None:
    folder = root / "bots" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bot.toml").write_text('provider = "echo"\nparams = { echo = "full" }\n')
    (folder / "system.md.j2").write_text(prompt)


def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_bot(tmp_path, "Alpha", "Prompt version one.")
    return tmp_path


def test_dev_reloads_breaks_keeps_last_good_and_recovers(project: Path) -> None:
    with polybot_process("dev", project=project) as (base, output):
        assert "[system]\nPrompt version one." in ask(base, "Alpha", "hi")

        (project / "bots/Alpha/system.md.j2").write_text("Prompt version two for {{ bot.name }}.")
        until(lambda: "Prompt version two for Alpha." in ask(base, "Alpha", "hi"))

        (project / "bots/Alpha/system.md.j2").write_text("Broken {% if %}")
        until(lambda: any("bots/Alpha/system.md.j2:1: template syntax error" in line for line in output))
        assert "Prompt version two for Alpha." in ask(base, "Alpha", "hi")  # last good version
        assert any("Alpha has errors; still serving its last good version" in line for line in output)

        (project / "bots/Alpha/system.md.j2").write_text("Fixed prompt.")
        until(lambda: "[system]\nFixed prompt." in ask(base, "Alpha", "hi"))
        assert not any("Traceback" in line for line in output)


def test_dev_adds_and_removes_bots(project: Path) -> None:
    with polybot_process("dev", project=project) as (base, output):
        write_bot(project, "Bravo", "I am new.")
        until(lambda: httpx.get(base + "/healthz").json()["bots"] == ["Alpha", "Bravo"])
        assert "[system]\nI am new." in ask(base, "Bravo", "hi")

        shutil.rmtree(project / "bots/Bravo")
        until(lambda: httpx.get(base + "/healthz").json()["bots"] == ["Alpha"])
        with pytest.raises(fp.BotError):
            ask(base, "Bravo", "hi")


def test_dev_needs_no_keys_and_answers_settings(project: Path) -> None:
    (project / "bots/Alpha/bot.toml").write_text(
        'provider = "echo"\n[poe]\nintroduction_message = "Hello from Alpha"\n')
    with polybot_process("dev", project=project, env={"POE_ACCESS_KEY_ALPHA": ""}) as (base, _):
        settings = httpx.post(base + "/Alpha", json={"version": "1.2", "type": "settings"},
                              headers={"Authorization": "Bearer anything"}).json()
        assert settings["introduction_message"] == "Hello from Alpha"
        assert ask(base, "Alpha", "echo me") == "echo me"


def test_dev_prints_one_line_per_reply_and_notices_env_edits(project: Path) -> None:
    old, new = "a" * 32, "b" * 32
    (project / ".env").write_text(f"POE_ACCESS_KEY_ALPHA={old}\n")
    with polybot_process("dev", project=project) as (base, output):
        assert "polybot dev: serving 1 bot, watching bots/, providers.toml, polybot.toml and .env" in output
        assert ask(base, "Alpha", "hi", key=old).endswith("hi")
        until(lambda: any(line.startswith("reply: Alpha  echo/echo  first token ") and line.endswith("  ok")
                          for line in output))
        with pytest.raises(fp.BotError):
            ask(base, "Alpha", "hi", key=new)

        (project / ".env").write_text(f"POE_ACCESS_KEY_ALPHA={new}\n")
        until(lambda: any("polybot dev: .env changed (POE_ACCESS_KEY_ALPHA); keys reloaded" in line
                          for line in output))
        assert ask(base, "Alpha", "hi", key=new).endswith("hi")
        with pytest.raises(fp.BotError):
            ask(base, "Alpha", "hi", key=old)
    assert not any(old in line or new in line for line in output)
