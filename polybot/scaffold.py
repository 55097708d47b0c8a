"""`polybot init`, `polybot new` and `polybot providers add`: files a user would otherwise write."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from polybot.config import BotConfig, ProviderConfig, error_message
from polybot.errors import Problem
from polybot.project import NAME_RULE, PROMPT_FILE

_PROVIDERS_TOML = '''\
# Providers for this project. Built-in presets (openai, anthropic, gemini, fireworks, together,
# groq, openrouter, deepseek, mistral, ollama, poe, echo) work without an entry here; an entry
# with the same name replaces the preset. Keys come from the environment (or .env), never here.
#
# [openai]
# kind = "openai"
# api_base = "https://api.openai.com/v1"
# api_key_env = "OPENAI_API_KEY"
# default_model = "gpt-4o-mini"
#
# Any OpenAI-compatible endpoint (vLLM, LM Studio, a gateway...):
# [my-endpoint]
# kind = "openai"
# api_base = "http://127.0.0.1:8000/v1"
# api_key_env = "MY_ENDPOINT_KEY"
# default_model = "my-model"

[echo]
kind = "echo"
default_model = "echo"
'''

_ECHO_TOML = '''\
provider = "echo"
description = "Replies with what you send. Works offline, with no API keys."
version = "1.0.0"

[vars]
tone = "plain"

[poe]
introduction_message = "I repeat what you say. Try me!"
'''

_ECHO_PROMPT = '''\
You are {{ bot.name }}: {{ bot.description }}
{% include "style.j2" %}
'''

_STYLE = '''\
{#- Shared by every bot: include it with {% include "style.j2" %}. -#}
Today is {{ now.strftime("%A, %d %B %Y") }} (UTC). Answer in a {{ vars.tone | default("clear") }} tone.
'''

_GITIGNORE = ".env\n__pycache__/\n.venv/\n.polybot/\n"  # .polybot/: the reply store (docs/logs.md)

_ENV_EXAMPLE = '''\
# Every polybot command reads .env (never commit it); a variable set in the environment wins.
# `polybot keys` lists what this project needs; `polybot keys set NAME` stores one in .env.
# OPENAI_API_KEY=
# ANTHROPIC_API_KEY=
# GEMINI_API_KEY=
# POE_ACCESS_KEY_ECHO=
'''

_TEST = '''\
"""Tests of this project's bots: run them with `python3 -m pytest`."""

from pathlib import Path

import pytest

from polybot.testing import Project, load_project


@pytest.fixture(scope="session")
def project() -> Project:
    # Builds every bot as `polybot build` does: a problem fails here, with its file and line.
    return load_project(Path(__file__).resolve().parents[1])


def test_every_bot_builds(project: Project) -> None:
    assert project.bots


def test_echo_repeats_the_message(project: Project) -> None:
    reply = project.ask("Echo", "hello")
    assert reply.ok, reply.error
    assert reply.text == "hello"


def test_echo_prompt_names_the_bot(project: Project) -> None:
    assert "You are Echo" in project.prompt("Echo")
'''

_README = '''\
# {name}

Poe bots made with [polybot](https://pypi.org/project/polybot-poe/): each folder in `bots/` is one
bot (`bot.toml` and a `system.md.j2` prompt).

```bash
# 1. install polybot and serve the bots, with a playground at http://127.0.0.1:8080/
python3 -m pip install polybot-poe && polybot dev

# 2. run this project's tests
python3 -m pip install polybot-poe pytest && python3 -m pytest
```

Then, in another terminal: `polybot chat Echo`. A bot on a real model:

```bash
polybot keys set OPENAI_API_KEY        # prompts for the key; stored in .env, never printed
polybot new Haiku --provider openai --system-message "You write haiku."
polybot chat Haiku -m "the sea"
```

`polybot keys` lists every key the project needs and whether each is set; `polybot build` checks
every bot and writes `build/` (commit it with `bots/`); `polybot --help` lists every command.
'''


def project_files(name: str) -> dict[str, str]:
    """What `polybot init` writes, by path relative to the project folder `name`."""
    return {
        "providers.toml": _PROVIDERS_TOML,
        "bots/Echo/bot.toml": _ECHO_TOML,
        f"bots/Echo/{PROMPT_FILE}": _ECHO_PROMPT,
        "bots/_shared/style.j2": _STYLE,
        ".gitignore": _GITIGNORE,
        ".env.example": _ENV_EXAMPLE,
        "tests/test_bots.py": _TEST,
        "README.md": _README.format(name=name),
    }


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a bot's name (project.NAME_RULE, the rule the build applies), or None."""
    if NAME_RULE.match(name):
        return None
    return f"invalid bot name {name!r}: Poe bot names are 4-20 characters of letters, digits, '-', '_' or '.'"


def bot_toml_problems(table: Mapping[str, Any], providers: Mapping[str, ProviderConfig]) -> list[str]:
    """What the build would reject in `table`, the bot.toml `polybot new` is about to write: the
    BotConfig schema (ranges named by their command-line options), then the build's own provider
    and model check."""
    from polybot.validate import resolve_model  # the one provider/model rule

    found = resolve_model(providers, str(table["provider"]), table.get("model"), "", "bot.toml", ())
    problems = [found.message.partition(": ")[2]] if isinstance(found, Problem) else []  # the option names the key
    try:
        BotConfig.model_validate(table)
    except ValidationError as exc:
        problems += [_option_problem(err) for err in exc.errors()]
    return problems


def _option_problem(err: ErrorDetails) -> str:
    """A BotConfig error on a value `polybot new` took from an option: `--temperature must be
    between 0 and 2, got 3`, its bounds read from the model."""
    field = str(err["loc"][0]) if err["loc"] else ""
    info = BotConfig.model_fields.get(field)
    bounds = {k: getattr(m, k) for m in (info.metadata if info else ()) for k in ("ge", "gt", "le", "lt")
              if getattr(m, k, None) is not None}
    value = err.get("input")
    shown = f"{value:g}" if isinstance(value, float) else value
    if "ge" in bounds and "le" in bounds:
        rule = f"between {bounds['ge']:g} and {bounds['le']:g}"
    elif "gt" in bounds:
        rule = f"greater than {bounds['gt']:g}"
    else:
        return error_message(BotConfig, err)
    return f"--{field.replace('_', '-')} must be {rule}, got {shown}"


def literal(text: str) -> str:
    """The system message as template text that renders to exactly itself: every opening
    delimiter ({{, {% or {#) is written as an expression that outputs its first brace."""
    return re.sub(r"\{(?=[{%#])", "{{ '{' }}", text)


def ignore_env(gitignore: Path) -> bool:
    """Add `.env` to an existing .gitignore unless it is already ignored there; True if added."""
    text = gitignore.read_text("utf-8")
    if any(line.strip() in (".env", "/.env", ".env*", "*.env") for line in text.splitlines()):
        return False
    gitignore.write_text(text + ("" if text.endswith("\n") or not text else "\n") + ".env\n", "utf-8")
    return True


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
