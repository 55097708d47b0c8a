"""`polybot sync [NAME...]`: push each bot's settings to Poe; with --api-bots, publish Poe API bots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polybot.env import load_env
from polybot.errors import PolybotError, did_you_mean
from polybot.manifest import load_manifest, manifest_path
from polybot.sync import DEFAULT_BASE_URL, stale, sync_one


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    names: list[str] = field(default_factory=list)
    base_url: str | None = None
    api_bots: bool = False
    url: str | None = None
    dry_run: bool = False
    send_key: bool = False


def run(options: Options) -> int:
    """Push the settings of the named bots (default: all) to Poe, one line per bot."""
    if options.api_bots:
        return run_api_bots(options)
    root: Path = options.project
    load_env(root)
    manifest = load_manifest(manifest_path(root))
    changes = stale(root, manifest)
    if changes:
        raise PolybotError([f"build/ is stale: {change}" for change in changes] +
                           ["run `polybot build` (and commit build/), then polybot sync again"])
    specs = manifest.bots  # settings come from the compiled specs: no bot's hooks.py is imported
    # API bots are published with --api-bots; they have no server-bot settings to push.
    names: Sequence[str] = list(dict.fromkeys(options.names)) or sorted(
        n for n, s in specs.items() if s.poe.kind != "api")
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise PolybotError([f"no bot named {n!r}{did_you_mean(n, specs)} in build/manifest.json"
                            for n in unknown])
    base = options.base_url or os.environ.get("POLYBOT_POE_BASE_URL") or DEFAULT_BASE_URL
    failures = [problem for name in names
                if (problem := sync_one(specs[name], manifest.providers, base)) is not None]
    if failures:
        raise PolybotError(failures)
    return 0


def run_api_bots(options: Options) -> int:
    """Create or update the named API bots (default: every bot marked `[poe] kind = "api"`)."""
    from polybot.api_bots import POE_API_KEY_ENV, POE_API_URL, ApiBotSync

    root: Path = options.project
    specs = load_manifest(manifest_path(root)).bots  # the compiled specs: no bot's hooks.py is imported
    names: Sequence[str] = list(dict.fromkeys(options.names)) or sorted(
        n for n, s in specs.items() if s.poe.kind == "api")
    problems = [f"no bot named {n!r}{did_you_mean(n, specs)} in build/manifest.json"
                for n in names if n not in specs]
    problems += [f"{n}: not an API bot; add `kind = \"api\"` to its [poe] table" for n in names
                 if n in specs and specs[n].poe.kind != "api"]
    if not names:
        problems.append('no bot is marked `[poe] kind = "api"`; add it to the bots to publish as Poe API bots')
    key = os.environ.get(POE_API_KEY_ENV, "")
    if not key:
        problems.append(f"{POE_API_KEY_ENV} is not set: export your Poe API key (poe.com/api/keys)")
    if problems:
        raise PolybotError(problems)
    base = os.environ.get("POLYBOT_POE_API_URL") or POE_API_URL
    syncer = ApiBotSync(base, key, dry_run=options.dry_run, send_key=options.send_key)
    try:
        failures = [p for n in names if (p := syncer.sync(specs[n], options.url)) is not None]
    finally:
        syncer.close()
    if failures:
        raise PolybotError(failures)
    return 0
