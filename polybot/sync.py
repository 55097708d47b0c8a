"""`polybot sync`: push each bot's settings (the same ones it serves) to Poe."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from polybot.bot import Runtime
from polybot.errors import PolybotError, did_you_mean
from polybot.manifest import load_manifest
from polybot.server import runtimes_from_manifest

#: fastapi_poe's own default; POLYBOT_POE_BASE_URL or --base-url point elsewhere (e.g. a test server).
DEFAULT_BASE_URL = "https://api.poe.com/bot/"


def cmd_sync(args: argparse.Namespace) -> int:
    """Push the settings of the named bots (default: all) to Poe, one line per bot."""
    if getattr(args, "api_bots", False):
        from polybot.api_bots import cmd_sync_api_bots

        return cmd_sync_api_bots(args)
    root: Path = args.project
    manifest = load_manifest(root / "build" / "manifest.json")
    runtimes = {r.spec.name: r for r in runtimes_from_manifest(manifest, root)}
    # API bots are published with --api-bots; they have no server-bot settings to push.
    names: Sequence[str] = list(dict.fromkeys(args.names)) or sorted(
        n for n, r in runtimes.items() if r.spec.poe.kind != "api")
    unknown = [n for n in names if n not in runtimes]
    if unknown:
        raise PolybotError([f"no bot named {n!r}{did_you_mean(n, runtimes)} in build/manifest.json"
                            for n in unknown])
    base = args.base_url or os.environ.get("POLYBOT_POE_BASE_URL") or DEFAULT_BASE_URL
    failures = [problem for name in names if (problem := sync_one(runtimes[name], base)) is not None]
    if failures:
        raise PolybotError(failures)
    return 0


def sync_one(runtime: Runtime, base_url: str) -> str | None:
    """Push one bot's settings; prints `synced <Name>`, or returns the problem line."""
    import fastapi_poe as fp

    name, variable = runtime.spec.name, runtime.spec.access_key_env
    key = os.environ.get(variable, "")
    if not key:
        return f"{name}: {variable} is not set: export the bot's Poe access key, then run polybot sync again"
    # The same body fastapi_poe sends when it syncs a bot itself, and that the bot serves.
    settings = runtime.settings().model_dump()
    try:
        # fastapi_poe prints Poe's answer; we print one line of our own instead.
        with contextlib.redirect_stdout(io.StringIO()):
            fp.sync_bot_settings(name, key, settings=settings, base_url=base_url)
    except Exception as exc:  # noqa: BLE001 - anything escaping here would print unscrubbed text
        return f"{name}: sync failed: {_reason(exc, key)}"
    print(f"synced {name}")
    return None


def _reason(exc: Exception, key: str) -> str:
    """The first line of the error, with the access key (which travels in the URL path) masked."""
    text = str(exc)
    for secret in {key, quote(key, safe="")}:
        text = text.replace(secret, "***")
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
