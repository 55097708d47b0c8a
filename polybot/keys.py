"""`polybot keys`: every variable the project needs and whether each is set (never its value);
`polybot keys set NAME` stores one in `.env`."""

from __future__ import annotations

import getpass
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polybot.config import ProviderConfig, default_access_key_env
from polybot.env import ENV_FILE, VARIABLE, source, store
from polybot.errors import PolybotError
from polybot.project import find_bots


def needed(root: Path, providers: Mapping[str, ProviderConfig]) -> dict[str, list[str]]:
    """Variable -> what needs it ("Haiku's Poe access key", "provider openai (Haiku)")."""
    users: dict[str, list[str]] = {}
    for bot in find_bots(root):
        try:
            data: dict[str, Any] = tomllib.loads((bot.path / "bot.toml").read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            data = {}  # a broken bot.toml is reported by the project check; its access key is still needed
        poe = data.get("poe")
        access = poe.get("access_key_env") if isinstance(poe, dict) else None
        access = access if isinstance(access, str) else None
        users.setdefault(access or default_access_key_env(bot.name), []).append(f"{bot.name} (Poe access key)")
        chain = [data.get("provider")]
        chain += [fb.get("provider") for fb in data.get("fallback") or [] if isinstance(fb, dict)]
        for name in chain:
            config = providers.get(name) if isinstance(name, str) else None
            if config is not None and config.api_key_env:
                who = users.setdefault(config.api_key_env, [])
                label = f"{bot.name} (provider {name})"
                if label not in who:
                    who.append(label)
    return dict(sorted(users.items()))


def status(variable: str) -> str:
    where = source(variable)
    return "missing" if where is None else ("set in .env" if where == ENV_FILE else "set in the environment")


def set_key(root: Path, name: str | None) -> None:
    """Store `name` in .env, its value read from the terminal (no echo) or stdin."""
    if not name:
        raise PolybotError(["polybot keys set needs a variable name, e.g. polybot keys set OPENAI_API_KEY"])
    if not VARIABLE.match(name):
        raise PolybotError([f"{name!r} is not a valid variable name (letters, digits and _, not starting "
                            "with a digit)"])
    if sys.stdin.isatty():
        value = getpass.getpass(f"Enter a value for {name}: ")
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise PolybotError([f"no value given: {name} unchanged"])
    path = store(root, name, value)
    print(f"stored {name} in {path.name}")
    if source(name) == "environment":
        print(f"note: {name} is also set in your environment, which wins over {ENV_FILE}", file=sys.stderr)
    elif name not in needed(root, _providers(root)):
        print(f"note: no bot in this project uses {name} yet", file=sys.stderr)


def _providers(root: Path) -> dict[str, ProviderConfig]:
    from polybot.config import load_providers
    from polybot.providers import known_kinds

    return load_providers(root, known_kinds())[0]

