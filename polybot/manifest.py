"""The compiled form of a project: everything `serve` needs, as deterministic JSON, no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from polybot.config import (
    BotLimits,
    CacheSettings,
    Fallback,
    PoeConfig,
    ProjectSettings,
    ProviderConfig,
    plain_errors,
)
from polybot.errors import PolybotError, Problem
from polybot.providers import known_kinds
from polybot.version import __version__

FORMAT = 10  # bump when the manifest changes shape: a build then rewrites it whole
#: The shape FORMAT stands for; tests/test_build.py fails when the models change without a bump.
SCHEMA_DIGEST = "a1d86de85c0016fe"


class BotSpec(BaseModel):
    """One compiled bot: its bot.toml resolved against its providers, plus its template sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    version: str
    provider: str
    model: str
    temperature: float | None
    max_tokens: int | None
    params: dict[str, Any]
    show_thinking: bool = False
    tools: list[str] = []
    max_tool_rounds: int = 5
    vars: dict[str, Any]
    fallback: list[Fallback]
    poe: PoeConfig
    access_key_env: str
    controls: list[dict[str, Any]]  # every control, `[parameter_controls]` ones included
    layout: dict[str, Any] | None = None  # [parameter_controls] as written
    templates: dict[str, str]
    hooks: str | None  # path of hooks.py relative to the project root
    hash: str  # of every input; an unchanged hash means an unchanged bot
    #: The variable holding the key of this bot on the OpenAI-compatible endpoint (SPEC §9).
    openai_api_key_env: str = "POLYBOT_API_KEY"
    judge: str | None = None  # [test] judge: the bot that grades `judge` checks
    #: bot.toml's own [limits] and [cache], over the project's (Manifest.settings).
    limits: BotLimits | None = None
    cache: CacheSettings | None = None

    def metadata(self) -> dict[str, str]:
        """What `bot info` shows and templates see as `bot`: no secrets, nothing internal."""
        return bot_metadata(self.name, self.description, self.version, self.provider, self.model)


def bot_metadata(name: str, description: str, version: str, provider: str, model: str) -> dict[str, str]:
    """A bot's public metadata (SPEC §1 `bot`, §4 `bot info`), also before its BotSpec exists (the
    build's sample render)."""
    return {"name": name, "version": version, "description": description, "provider": provider, "model": model}


class Manifest(BaseModel):
    """build/manifest.json."""

    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    polybot: str = __version__
    providers: dict[str, ProviderConfig]
    shared_templates: dict[str, str]
    bots: dict[str, BotSpec]
    settings: ProjectSettings = ProjectSettings()  # polybot.toml

    def dumps(self) -> bytes:
        """Byte-identical for identical content: field order is fixed by the models, bots and
        templates are sorted by name, tables keep their order in the TOML files."""
        return self.model_dump_json(indent=2).encode() + b"\n"


#: Where a project's compiled manifest is, relative to its root (what `serve`, `sync` and `deploy` read).
MANIFEST_PATH = "build/manifest.json"


def manifest_path(root: Path) -> Path:
    """The project's build/manifest.json."""
    return root / MANIFEST_PATH


def load_manifest(path: Path, rel: str = MANIFEST_PATH) -> Manifest:
    """Read a manifest; a missing or broken one is a located PolybotError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolybotError([Problem(rel, None, "not found; run `polybot build` first")]) from None
    try:
        return Manifest.model_validate_json(raw, context={"kinds": known_kinds()})
    except ValidationError as exc:
        where, message = plain_errors(exc)[0]
        raise PolybotError([Problem(rel, None, f"invalid manifest ({where}: {message}); "
                                    "rebuild it with `polybot build`")]) from None
