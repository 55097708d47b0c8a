"""`polybot providers add NAME`: add or replace a provider in providers.toml, keeping its comments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError

from polybot.config import ProviderConfig, error_message
from polybot.errors import PolybotError
from polybot.providers import known_kinds


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    name: str
    kind: str
    api_base: str
    api_key_env: str
    default_model: str
    models: list[str] | None = None
    api_version: str | None = None
    header: list[str] = field(default_factory=list)
    force: bool = False


def run(options: Options) -> int:
    root: Path = options.project
    path = root / "providers.toml"
    headers: dict[str, str] = {}
    problems = []
    for raw in options.header:
        key, sep, value = raw.partition(":")
        if not sep or not key.strip():
            problems.append(f"--header {raw!r}: expected \"Name: value\"")
        else:
            headers[key.strip()] = value.strip()
    table: dict[str, Any] = {"kind": options.kind, "api_base": options.api_base, "api_key_env": options.api_key_env,
                             "default_model": options.default_model}
    if options.models:
        table["models"] = list(options.models)
    if options.api_version:
        table["api_version"] = options.api_version
    if headers:
        table["headers"] = headers
    try:
        ProviderConfig.model_validate(table, context={"kinds": known_kinds()})
    except ValidationError as exc:
        problems += [error_message(ProviderConfig, e) for e in exc.errors()]
    text = path.read_text("utf-8") if path.is_file() else ""
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise PolybotError([f"providers.toml:{exc.line}: TOML syntax error: fix it before adding a provider"]) \
            from None
    if options.name in doc and not options.force:
        problems.append(f"providers.toml already defines [{options.name}]; pass --force to replace it")
    if problems:
        raise PolybotError(problems)
    new = tomlkit.table()
    for key, value in table.items():
        new[key] = tomlkit.inline_table() if isinstance(value, dict) else value
        if isinstance(value, dict):
            new[key].update(value)
    if options.name in doc:
        doc[options.name] = new
    else:
        if text and not text.endswith("\n\n"):
            doc.add(tomlkit.nl())
        doc[options.name] = new
    path.write_text(tomlkit.dumps(doc), "utf-8")
    print(f"{'replaced' if options.name in text and options.force else 'added'} [{options.name}] in providers.toml "
          f"(key from {options.api_key_env})")
    return 0


