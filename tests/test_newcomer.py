"""What a new user does, start to finish, with every adapter kind against local fake providers: the
commands in-process, the compiled build served as `polybot serve` serves it (tests/e2e/ has the real
processes)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polybot.app import create_app
from polybot.cli import main
from polybot.manifest import load_manifest, manifest_path
from polybot.replylog import LOGGER
from tests.e2e.helpers import ask
from tests.fakes.anthropic_wire import FakeAnthropic
from tests.fakes.gemini_wire import FakeGemini
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.poe_wire import TARGET_KEY, RunningPoe, running_poe_bot
from tests.fakes.server import serve_in_thread
from tests.fakes.wire import Reply, running

KEYS = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "GEMINI_API_KEY": "g-k", "LOCAL_LLM_KEY": "l-k"}
BOTS = {"Echoer": "echo", "OpenBot": "openai", "ClaudeBot": "anthropic", "GemBot": "gemini",
        "LocalBot": "localllm", "Relay": "poe"}


Polybot = Callable[..., tuple[int, str]]


@pytest.fixture
def polybot(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Polybot:
    def run(*args: str, cwd: Path) -> tuple[int, str]:
        """`polybot ARGS` in `cwd`: its exit code and what it wrote to stderr."""
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
        return code, capsys.readouterr().err
    return run


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, FakeGemini, FakeOpenAI, RunningPoe]]:
    with running(FakeOpenAI(default=Reply(["from", " openai"]))) as oa, \
            running(FakeAnthropic(default=Reply(["from", " anthropic"]))) as an, \
            running(FakeGemini(default=Reply(["from", " gemini"]))) as ge, \
            running(FakeOpenAI(default=Reply(["from", " local"]))) as local, \
            running_poe_bot("TargetBot") as target:
        yield oa, an, ge, local, target


def test_new_user_path(tmp_path: Path, polybot: Polybot, monkeypatch: pytest.MonkeyPatch,
                       caplog: pytest.LogCaptureFixture, fakes: tuple[FakeOpenAI, FakeAnthropic, FakeGemini,
                                                                      FakeOpenAI, RunningPoe]) -> None:
    oa, an, ge, local, target = fakes
    assert polybot("init", "mybots", cwd=tmp_path)[0] == 0
    project = tmp_path / "mybots"
    # Point the presets at the local fakes, as a user would point them at a gateway.
    with (project / "providers.toml").open("a") as f:
        f.write(f'\n[openai]\nkind = "openai"\napi_base = "{oa.base_url}/v1"\napi_key_env = "OPENAI_API_KEY"\n'
                'default_model = "gpt-4o-mini"\n'
                f'\n[anthropic]\nkind = "anthropic"\napi_base = "{an.base_url}"\napi_key_env = "ANTHROPIC_API_KEY"\n'
                'default_model = "claude-haiku-4-5"\n'
                f'\n[gemini]\nkind = "gemini"\napi_base = "{ge.base_url}"\napi_key_env = "GEMINI_API_KEY"\n'
                'default_model = "gemini-2.5-flash"\n'
                f'\n[poe]\nkind = "poe"\napi_base = "{target.base_url}"\ndefault_model = "TargetBot"\n')
    code, err = polybot("providers", "add", "localllm", "--kind", "openai", "--api-base", f"{local.base_url}/v1",
                        "--api-key-env", "LOCAL_LLM_KEY", "--default-model", "llama", cwd=project)
    assert code == 0, err
    for name, provider in BOTS.items():
        code, err = polybot("new", name, "--provider", provider, "--system-message", f"You are {name}.", cwd=project)
        assert code == 0, err
    assert polybot("build", cwd=project) == (0, "")
    assert polybot("build", "--check", cwd=project)[0] == 0
    (project / "bots/OpenBot/system.md.j2").write_text("You are OpenBot, edited.\n")
    code, err = polybot("build", "--check", cwd=project)
    assert code == 1 and "build/prompts/OpenBot.md: stale" in err
    assert polybot("build", cwd=project)[0] == 0

    access = {f"POE_ACCESS_KEY_{name.upper()}": f"{name:x<32}"[:32] for name in BOTS}
    access["POE_ACCESS_KEY_RELAY"] = TARGET_KEY  # the Relay bot calls TargetBot with its own key
    access["POE_ACCESS_KEY_ECHO"] = "e" * 32  # the bot `polybot init` made
    for var, value in {**KEYS, **access}.items():
        monkeypatch.setenv(var, value)
    caplog.set_level(logging.DEBUG)
    server = create_app(load_manifest(manifest_path(project)), project)
    with serve_in_thread(server.app) as base:
        replies = {name: ask(base, name, "hello there", key=access[f"POE_ACCESS_KEY_{name.upper()}"])
                   for name in BOTS}
    assert replies == {"Echoer": "hello there", "OpenBot": "from openai", "ClaudeBot": "from anthropic",
                       "GemBot": "from gemini", "LocalBot": "from local", "Relay": "Poe says hi"}
    assert oa.requests[-1].json["messages"][0] == {"role": "system", "content": "You are OpenBot, edited.\n"}
    assert local.requests[-1].headers["authorization"] == "Bearer l-k"
    assert target.bot.received[-1].query[0].content == "You are Relay.\n"
    assert len([r for r in caplog.records if r.name == LOGGER]) == len(BOTS)
    for secret in (*KEYS.values(), *access.values()):
        assert all(secret not in record.getMessage() for record in caplog.records if len(secret) > 4)
