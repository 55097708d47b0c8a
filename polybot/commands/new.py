"""`polybot new NAME`: create bots/NAME/ with bot.toml and system.md.j2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from polybot.config import default_access_key_env, load_providers
from polybot.errors import PolybotError, Problem
from polybot.project import PROMPT_FILE, find_bots
from polybot.providers import known_kinds
from polybot.scaffold import bot_toml_problems, literal, name_problem


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    name: str
    provider: str = "echo"
    model: str | None = None
    description: str = ""
    system_message: str = "You are a helpful assistant."
    temperature: float | None = None
    max_tokens: int | None = None
    force: bool = False


def run(options: Options) -> int:
    root: Path = options.project
    name: str = options.name
    problems: list[Problem | str] = []
    bad_name = name_problem(name)
    if bad_name is not None:
        problems.append(bad_name)
    providers, provider_problems = load_providers(root, known_kinds())
    problems += provider_problems  # located, first
    table: dict[str, Any] = {"provider": options.provider}
    if options.model:
        table["model"] = options.model
    table["description"] = options.description
    table["version"] = "1.0.0"
    if options.temperature is not None:
        table["temperature"] = options.temperature
    if options.max_tokens is not None:
        table["max_tokens"] = options.max_tokens
    problems += bot_toml_problems(table, providers)
    folder = root / "bots" / name
    clash = next((b.name for b in find_bots(root) if b.name.lower() == name.lower() and b.name != name), None)
    if clash is not None:
        problems.append(f"bots/{clash}/ already exists and Poe names are case-insensitive; pick another name")
    if folder.exists() and not options.force:
        problems.append(f"bots/{name}/ already exists; pass --force to replace its bot.toml and {PROMPT_FILE}")
    if problems:
        raise PolybotError(problems)

    doc = tomlkit.document()
    doc.update(table)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bot.toml").write_text(tomlkit.dumps(doc), "utf-8")
    (folder / PROMPT_FILE).write_text(literal(options.system_message) + "\n", "utf-8")
    print(f"created bots/{name}/bot.toml")
    print(f"created bots/{name}/{PROMPT_FILE}")
    print(f"Poe access key variable: {default_access_key_env(name)}")
    print("Next: polybot build    (or polybot chat " + name + " -m hello)")
    return 0


