"""`polybot list`: what the project defines, and whether each key is set (never its value)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polybot.config import ProviderConfig, default_access_key_env
from polybot.project import find_bots


def key_status(variable: str | None, environ: Mapping[str, str]) -> str:
    if not variable:
        return "no key needed"
    return f"{variable} {'set' if environ.get(variable) else 'missing'}"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def bot_rows(root: Path, providers: Mapping[str, ProviderConfig], environ: Mapping[str, str]) -> list[list[str]]:
    rows = [["BOT", "PROVIDER/MODEL", "PROVIDER KEY", "POE ACCESS KEY"]]
    for bot in find_bots(root):
        try:
            data: dict[str, Any] = tomllib.loads((bot.path / "bot.toml").read_text("utf-8"))
            provider = providers[data["provider"]]
            model = data.get("model") or provider.default_model or "?"
            access = (data.get("poe") or {}).get("access_key_env") or default_access_key_env(bot.name)
        except Exception:  # noqa: BLE001 - a broken bot is listed, not fatal
            rows.append([bot.name, "error: run polybot build", "", ""])
            continue
        rows.append([bot.name, f"{data['provider']}/{model}", key_status(provider.api_key_env, environ),
                     key_status(access, environ)])
    return rows


def provider_rows(root: Path, providers: Mapping[str, ProviderConfig], environ: Mapping[str, str]) -> list[list[str]]:
    path = root / "providers.toml"
    try:
        own = set(tomllib.loads(path.read_text("utf-8"))) if path.is_file() else set()
    except tomllib.TOMLDecodeError:
        own = set()  # reported, located, before the table
    rows = [["PROVIDER", "KIND", "DEFAULT MODEL", "FROM", "KEY"]]
    for name in sorted(providers):
        p = providers[name]
        origin = "providers.toml" if name in own else "preset"
        rows.append([name, p.kind, p.default_model or "-", origin, key_status(p.api_key_env, environ)])
    return rows
