"""`polybot new NAME`: create bots/NAME/ with bot.toml and system.md.j2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomlkit

from polybot.config import default_access_key_env, load_providers
from polybot.errors import PolybotError, Problem, did_you_mean
from polybot.project import NAME_RULE, PROMPT_FILE, find_bots
from polybot.providers import known_kinds
from polybot.scaffold import literal


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
    if not NAME_RULE.match(name):
        problems.append(f"invalid bot name {name!r}: Poe bot names are 4-20 characters of letters, digits, "
                        "'-', '_' or '.'")
    providers, provider_problems = load_providers(root, known_kinds())
    problems += provider_problems  # located, first
    if options.provider not in providers:
        problems.append(f"unknown provider {options.provider!r}{did_you_mean(options.provider, providers)}; "
                        f"choose one of {', '.join(sorted(providers))} or add one with `polybot providers add`")
    elif (options.model and providers[options.provider].models
          and options.model not in (providers[options.provider].models or [])):
        offered = providers[options.provider].models or []
        problems.append(f"unknown model {options.model!r} for provider {options.provider!r}"
                        f"{did_you_mean(options.model, offered)}; it offers {', '.join(offered)}")
    if options.temperature is not None and not 0 <= options.temperature <= 2:
        problems.append(f"--temperature must be between 0 and 2, got {options.temperature:g}")
    if options.max_tokens is not None and options.max_tokens <= 0:
        problems.append(f"--max-tokens must be greater than 0, got {options.max_tokens}")
    folder = root / "bots" / name
    clash = next((b.name for b in find_bots(root) if b.name.lower() == name.lower() and b.name != name), None)
    if clash is not None:
        problems.append(f"bots/{clash}/ already exists and Poe names are case-insensitive; pick another name")
    if folder.exists() and not options.force:
        problems.append(f"bots/{name}/ already exists; pass --force to replace its bot.toml and {PROMPT_FILE}")
    if problems:
        raise PolybotError(problems)

    doc = tomlkit.document()
    doc["provider"] = options.provider
    if options.model:
        doc["model"] = options.model
    doc["description"] = options.description
    doc["version"] = "1.0.0"
    if options.temperature is not None:
        doc["temperature"] = options.temperature
    if options.max_tokens is not None:
        doc["max_tokens"] = options.max_tokens
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bot.toml").write_text(tomlkit.dumps(doc), "utf-8")
    (folder / PROMPT_FILE).write_text(literal(options.system_message) + "\n", "utf-8")
    print(f"created bots/{name}/bot.toml")
    print(f"created bots/{name}/{PROMPT_FILE}")
    print(f"Poe access key variable: {default_access_key_env(name)}")
    print("Next: polybot build    (or polybot chat " + name + " -m hello)")
    return 0


