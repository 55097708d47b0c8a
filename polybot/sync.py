"""`polybot sync`: push each bot's settings (the same ones it serves) to Poe."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from polybot.compiler import Compiler
from polybot.config import ProviderConfig
from polybot.errors import PolybotError
from polybot.manifest import BotSpec, Manifest
from polybot.runtime import settings as bot_settings

#: fastapi_poe's own default; POLYBOT_POE_BASE_URL or --base-url point elsewhere (e.g. a test server).
DEFAULT_BASE_URL = "https://api.poe.com/bot/"


def sync_one(spec: BotSpec, providers: Mapping[str, ProviderConfig], base_url: str) -> str | None:
    """Push one bot's settings; prints `synced <Name>`, or returns the problem line."""
    import fastapi_poe as fp

    name, variable = spec.name, spec.access_key_env
    key = os.environ.get(variable, "")
    if not key:
        return (f"{name}: {variable} is not set: store the bot's Poe access key with `polybot keys set "
                f"{variable}` (or export it), then run polybot sync again")
    # The same body fastapi_poe sends when it syncs a bot itself, and that the bot serves.
    settings = bot_settings(spec, providers).model_dump()
    try:
        # fastapi_poe prints Poe's answer; we print one line of our own instead.
        with contextlib.redirect_stdout(io.StringIO()):
            fp.sync_bot_settings(name, key, settings=settings, base_url=base_url)
    except Exception as exc:  # noqa: BLE001 - anything escaping here would print unscrubbed text
        cause = exc.__cause__ if isinstance(exc.__cause__, httpx.TransportError) else exc
        if isinstance(cause, httpx.TransportError):
            host = urlsplit(base_url).netloc or base_url
            return (f"{name}: sync failed: cannot reach {host} ({type(cause).__name__}); check the network, "
                    "or --base-url / POLYBOT_POE_BASE_URL")
        return f"{name}: sync failed: {_reason(exc, key)}"
    print(f"synced {name}")
    return None


def stale(root: Path, manifest: Manifest) -> list[str]:
    """What changed in the project since `manifest` was built (empty when it is current)."""
    try:
        current = Compiler(root).manifest()
    except PolybotError as exc:
        raise PolybotError([*exc.problems, "fix these, run `polybot build`, then polybot sync again"]) from None
    changes = []
    if current.providers != manifest.providers:
        changes.append("providers.toml changed")
    # The manifest holds only the partials some bot uses: one appearing or going is that bot's change.
    if any(current.shared_templates[k] != v for k, v in manifest.shared_templates.items()
           if k in current.shared_templates):
        changes.append("bots/_shared/ changed")
    for name in sorted(current.bots.keys() - manifest.bots.keys()):
        changes.append(f"bots/{name}/ is new")
    for name in sorted(manifest.bots.keys() - current.bots.keys()):
        changes.append(f"bots/{name}/ was removed")
    common = sorted(current.bots.keys() & manifest.bots.keys())
    hash_only = []  # inputs outside the spec changed: the bot's hooks.py, or (for all) providers.toml
    for name in common:
        old, new = manifest.bots[name], current.bots[name]
        if old.model_dump(exclude={"hash"}) != new.model_dump(exclude={"hash"}):
            changes.append(f"bots/{name}/ changed")
        elif old.hash != new.hash:
            hash_only.append(name)
    if len(hash_only) > 1 and len(hash_only) == len(common) and not changes:
        changes.append("providers.toml or bots/_shared/ changed")
    else:
        changes += [f"bots/{name}/ changed" for name in hash_only]
    if not changes and current.polybot != manifest.polybot:
        changes.append(f"built by polybot {manifest.polybot}, this is {current.polybot}")
    return changes


def _reason(exc: Exception, key: str) -> str:
    """The first line of the error, with the access key (which travels in the URL path) masked."""
    text = str(exc)
    for secret in {key, quote(key, safe="")}:
        text = text.replace(secret, "***")
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
