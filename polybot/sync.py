"""`polybot sync`: push each bot's settings (the same ones it serves) to Poe."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

from polybot.errors import PolybotError, did_you_mean
from polybot.manifest import load_manifest
from polybot.server import runtimes_from_manifest

DEFAULT_BASE_URL = "https://api.poe.com/bot/"


def cmd_sync(args: Any) -> int:
    import fastapi_poe as fp

    root: Path = args.project
    manifest = load_manifest(root / "build" / "manifest.json")
    runtimes = {r.spec.name: r for r in runtimes_from_manifest(manifest, root)}
    unknown = [n for n in args.names if n not in runtimes]
    if unknown:
        raise PolybotError([f"no bot named {n!r}{did_you_mean(n, runtimes)} in build/manifest.json" for n in unknown])
    base = args.base_url or os.environ.get("POLYBOT_POE_BASE_URL") or DEFAULT_BASE_URL
    failures: list[str] = []
    for name in args.names or sorted(runtimes):
        runtime = runtimes[name]
        key = os.environ.get(runtime.spec.access_key_env, "")
        if not key:
            failures.append(f"{name}: {runtime.spec.access_key_env} is not set: export the bot's Poe access key")
            continue
        settings = runtime.settings().model_dump(exclude_none=True)
        try:
            # fastapi_poe prints Poe's answer; we print one line of our own per bot instead.
            with contextlib.redirect_stdout(io.StringIO()):
                fp.sync_bot_settings(name, key, settings=settings, base_url=base)
        except Exception as exc:  # noqa: BLE001 - BotError, httpx errors: one line per bot
            # The key travels in the URL path, so it may appear in error text: scrub it.
            reason = str(exc).replace(key, "***").strip().splitlines()[0][:300] if str(exc) else type(exc).__name__
            failures.append(f"{name}: sync failed: {reason}")
            continue
        print(f"synced {name}")
    if failures:
        raise PolybotError(failures)
    return 0
