"""`polybot init`, `polybot new` and `polybot providers add`: files a user would otherwise write."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError

from polybot.config import ProviderConfig, default_access_key_env, load_providers
from polybot.errors import PolybotError, Problem, did_you_mean
from polybot.project import NAME_RULE, PROMPT_FILE, find_bots

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

_GITIGNORE = ".env\n__pycache__/\n.venv/\n"

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


def cmd_init(args: Any) -> int:
    root: Path = (Path.cwd() / args.dir).resolve() if args.dir is not None else args.project
    for existing in ("providers.toml", "bots"):
        if (root / existing).exists():
            raise PolybotError([f"{root / existing} already exists: polybot init makes a new project; "
                                "pick an empty folder (polybot init DIR)"])
    files = {
        "providers.toml": _PROVIDERS_TOML,
        "bots/Echo/bot.toml": _ECHO_TOML,
        f"bots/Echo/{PROMPT_FILE}": _ECHO_PROMPT,
        "bots/_shared/style.j2": _STYLE,
        ".gitignore": _GITIGNORE,
        ".env.example": _ENV_EXAMPLE,
        "tests/test_bots.py": _TEST,
        "README.md": _README.format(name=root.name),
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text, "utf-8")
            print(f"created {rel}")
        elif rel == ".gitignore" and _ignore_env(path):
            print(f"updated {rel} (added .env: it holds your keys)")
        else:
            print(f"kept {rel} (it was already there)")
    where = _shown(root)
    cd = "" if root == Path.cwd().resolve() else f"cd {where} && "
    print(f"\nNext: {cd}polybot dev    (then, in another terminal: polybot chat Echo)")
    return 0


def cmd_new(args: Any) -> int:
    root: Path = args.project
    name: str = args.name
    problems: list[Problem | str] = []
    if not NAME_RULE.match(name):
        problems.append(f"invalid bot name {name!r}: Poe bot names are 4-20 characters of letters, digits, "
                        "'-', '_' or '.'")
    providers, provider_problems = load_providers(root)
    problems += provider_problems  # located, first
    if args.provider not in providers:
        problems.append(f"unknown provider {args.provider!r}{did_you_mean(args.provider, providers)}; "
                        f"choose one of {', '.join(sorted(providers))} or add one with `polybot providers add`")
    elif args.model and providers[args.provider].models and args.model not in (providers[args.provider].models or []):
        offered = providers[args.provider].models or []
        problems.append(f"unknown model {args.model!r} for provider {args.provider!r}"
                        f"{did_you_mean(args.model, offered)}; it offers {', '.join(offered)}")
    if args.temperature is not None and not 0 <= args.temperature <= 2:
        problems.append(f"--temperature must be between 0 and 2, got {args.temperature:g}")
    if args.max_tokens is not None and args.max_tokens <= 0:
        problems.append(f"--max-tokens must be greater than 0, got {args.max_tokens}")
    folder = root / "bots" / name
    clash = next((b.name for b in find_bots(root) if b.name.lower() == name.lower() and b.name != name), None)
    if clash is not None:
        problems.append(f"bots/{clash}/ already exists and Poe names are case-insensitive; pick another name")
    if folder.exists() and not args.force:
        problems.append(f"bots/{name}/ already exists; pass --force to replace its bot.toml and {PROMPT_FILE}")
    if problems:
        raise PolybotError(problems)

    doc = tomlkit.document()
    doc["provider"] = args.provider
    if args.model:
        doc["model"] = args.model
    doc["description"] = args.description
    doc["version"] = "1.0.0"
    if args.temperature is not None:
        doc["temperature"] = args.temperature
    if args.max_tokens is not None:
        doc["max_tokens"] = args.max_tokens
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bot.toml").write_text(tomlkit.dumps(doc), "utf-8")
    (folder / PROMPT_FILE).write_text(_literal(args.system_message) + "\n", "utf-8")
    print(f"created bots/{name}/bot.toml")
    print(f"created bots/{name}/{PROMPT_FILE}")
    print(f"Poe access key variable: {default_access_key_env(name)}")
    print("Next: polybot build    (or polybot chat " + name + " -m hello)")
    return 0


def _literal(text: str) -> str:
    """The system message as template text that renders to exactly itself: every opening
    delimiter ({{, {% or {#) is written as an expression that outputs its first brace."""
    return re.sub(r"\{(?=[{%#])", "{{ '{' }}", text)


def _ignore_env(gitignore: Path) -> bool:
    """Add `.env` to an existing .gitignore unless it is already ignored there; True if added."""
    text = gitignore.read_text("utf-8")
    if any(line.strip() in (".env", "/.env", ".env*", "*.env") for line in text.splitlines()):
        return False
    gitignore.write_text(text + ("" if text.endswith("\n") or not text else "\n") + ".env\n", "utf-8")
    return True


def cmd_providers_add(args: Any) -> int:
    root: Path = args.project
    path = root / "providers.toml"
    headers: dict[str, str] = {}
    problems = []
    for raw in args.header:
        key, sep, value = raw.partition(":")
        if not sep or not key.strip():
            problems.append(f"--header {raw!r}: expected \"Name: value\"")
        else:
            headers[key.strip()] = value.strip()
    table: dict[str, Any] = {"kind": args.kind, "api_base": args.api_base, "api_key_env": args.api_key_env,
                             "default_model": args.default_model}
    if args.models:
        table["models"] = list(args.models)
    if args.api_version:
        table["api_version"] = args.api_version
    if headers:
        table["headers"] = headers
    try:
        ProviderConfig.model_validate(table)
    except ValidationError as exc:
        problems += [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors()]
    text = path.read_text("utf-8") if path.is_file() else ""
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise PolybotError([f"providers.toml:{exc.line}: TOML syntax error: fix it before adding a provider"]) \
            from None
    if args.name in doc and not args.force:
        problems.append(f"providers.toml already defines [{args.name}]; pass --force to replace it")
    if problems:
        raise PolybotError(problems)
    new = tomlkit.table()
    for key, value in table.items():
        new[key] = tomlkit.inline_table() if isinstance(value, dict) else value
        if isinstance(value, dict):
            new[key].update(value)
    if args.name in doc:
        doc[args.name] = new
    else:
        if text and not text.endswith("\n\n"):
            doc.add(tomlkit.nl())
        doc[args.name] = new
    path.write_text(tomlkit.dumps(doc), "utf-8")
    print(f"{'replaced' if args.name in text and args.force else 'added'} [{args.name}] in providers.toml "
          f"(key from {args.api_key_env})")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
