"""What a new user does, start to finish, with every adapter kind against local fake providers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import ask, polybot_process
from tests.fakes.anthropic_wire import FakeAnthropic
from tests.fakes.gemini_wire import FakeGemini
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.poe_wire import TARGET_KEY, RunningPoe, running_poe_bot
from tests.fakes.wire import Reply, running

KEYS = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "GEMINI_API_KEY": "g-k", "LOCAL_LLM_KEY": "l-k"}
BOTS = {"Echoer": "echo", "OpenBot": "openai", "ClaudeBot": "anthropic", "GemBot": "gemini",
        "LocalBot": "localllm", "Relay": "poe"}


def polybot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polybot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, FakeGemini, FakeOpenAI, RunningPoe]]:
    with running(FakeOpenAI(default=Reply(["from", " openai"]))) as oa, \
            running(FakeAnthropic(default=Reply(["from", " anthropic"]))) as an, \
            running(FakeGemini(default=Reply(["from", " gemini"]))) as ge, \
            running(FakeOpenAI(default=Reply(["from", " local"]))) as local, \
            running_poe_bot("TargetBot") as target:
        yield oa, an, ge, local, target


def test_new_user_path(tmp_path: Path, fakes: tuple[FakeOpenAI, FakeAnthropic, FakeGemini, FakeOpenAI,
                                                   RunningPoe]) -> None:
    oa, an, ge, local, target = fakes
    assert polybot("init", "mybots", cwd=tmp_path).returncode == 0
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
    added = polybot("providers", "add", "localllm", "--kind", "openai", "--api-base", f"{local.base_url}/v1",
                    "--api-key-env", "LOCAL_LLM_KEY", "--default-model", "llama", cwd=project)
    assert added.returncode == 0, added.stderr
    for name, provider in BOTS.items():
        made = polybot("new", name, "--provider", provider, "--system-message", f"You are {name}.", cwd=project)
        assert made.returncode == 0, made.stderr
    built = polybot("build", cwd=project)
    assert built.returncode == 0, built.stderr
    assert polybot("build", "--check", cwd=project).returncode == 0
    (project / "bots/OpenBot/system.md.j2").write_text("You are OpenBot, edited.\n")
    stale = polybot("build", "--check", cwd=project)
    assert stale.returncode == 1 and "build/prompts/OpenBot.md: stale" in stale.stderr
    assert polybot("build", cwd=project).returncode == 0

    access = {f"POE_ACCESS_KEY_{name.upper()}": f"{name:x<32}"[:32] for name in BOTS}
    access["POE_ACCESS_KEY_RELAY"] = TARGET_KEY  # the Relay bot calls TargetBot with its own key
    access["POE_ACCESS_KEY_ECHO"] = "e" * 32  # the bot `polybot init` made
    with polybot_process("serve", project=project, env={**KEYS, **access}) as (base, output):
        replies = {name: ask(base, name, "hello there", key=access[f"POE_ACCESS_KEY_{name.upper()}"])
                   for name in BOTS}
    assert replies == {"Echoer": "hello there", "OpenBot": "from openai", "ClaudeBot": "from anthropic",
                       "GemBot": "from gemini", "LocalBot": "from local", "Relay": "Poe says hi"}
    assert oa.requests[-1].json["messages"][0] == {"role": "system", "content": "You are OpenBot, edited.\n"}
    assert local.requests[-1].headers["authorization"] == "Bearer l-k"
    assert target.bot.received[-1].query[0].content == "You are Relay.\n"
    for secret in (*KEYS.values(), *access.values()):
        assert all(secret not in line for line in output if len(secret) > 4)
