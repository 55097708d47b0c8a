"""The ASGI app: every bot at POST /<Name>, through fastapi_poe, swappable while serving."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import fastapi_poe as fp
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from polybot.bot import PolyPoeBot, Runtime
from polybot.errors import PolybotError
from polybot.hookloader import load_hooks
from polybot.manifest import Manifest
from polybot.poe_sse import PoeStream
from polybot.project import SHARED_DIR
from polybot.prompts import PromptLibrary
from polybot.reliability import ProviderPool

#: Poe queries carry whole conversations; anything larger than this is refused cleanly.
MAX_BODY_BYTES = 8 * 1024 * 1024


class BotServer:
    """Holds the app and its bots; `put` and `remove` change what is served without a restart."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.bots: dict[str, PolyPoeBot] = {}
        self.app = FastAPI(title="polybot", docs_url=None, redoc_url=None, openapi_url=None)
        self.app.add_middleware(PoeStream, bots=self.bots)  # innermost: queries, written as SSE bytes
        self.app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)

        async def health(request: Request) -> Response:
            return JSONResponse({"bots": sorted(self.bots)})

        self.app.add_route("/healthz", health, methods=["GET"])

    def put(self, runtime: Runtime) -> None:
        """Serve `runtime` at /<Name>, replacing the bot of that name atomically if present."""
        name = runtime.spec.name
        key = self.environ.get(runtime.spec.access_key_env) or None
        if name in self.bots:
            self.bots[name].runtime = runtime
            self.bots[name].access_key = key
            return
        bot = PolyPoeBot(runtime, key)
        # make_app logs a multi-line warning per bot without a bot_name; we never sync at start-up.
        quiet = logging.getLogger("uvicorn.default")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            # A bot whose key is unset answers anyone: `serve` refuses that unless told otherwise.
            fp.make_app([bot], allow_without_key=True, app=self.app)
        finally:
            quiet.setLevel(level)
        self.bots[name] = bot

    def remove(self, name: str) -> None:
        if self.bots.pop(name, None) is None:
            return
        path = f"/{name}"
        self.app.router.routes[:] = [r for r in self.app.router.routes if getattr(r, "path", None) != path]

    def missing_keys(self) -> list[str]:
        return sorted({b.runtime.spec.access_key_env for b in self.bots.values() if not b.access_key})


def runtimes_from_manifest(manifest: Manifest, root: Path,
                           environ: Mapping[str, str] | None = None) -> list[Runtime]:
    """Everything `serve` needs, from build/manifest.json (plus the hooks.py files it names)."""
    environ = os.environ if environ is None else environ
    library = PromptLibrary()
    library.set_files(SHARED_DIR, manifest.shared_templates)
    pool = ProviderPool(manifest.providers)
    runtimes = []
    for spec in manifest.bots.values():
        library.set_files(spec.name, spec.templates)
        hooks = load_hooks(root / spec.hooks, spec.hooks, spec.name) if spec.hooks else None
        runtimes.append(Runtime(spec, library, pool, hooks, root, environ))
    return runtimes


def create_app(manifest: Manifest, root: Path, *, allow_without_key: bool = False,
               environ: Mapping[str, str] | None = None) -> BotServer:
    """A server for every bot in `manifest`; refuses bots without access keys unless allowed."""
    from polybot.openai_api import mount_openai

    server = BotServer(environ)
    for runtime in runtimes_from_manifest(manifest, root, environ):
        server.put(runtime)
    mount_openai(server, open_without_key=allow_without_key)
    missing = server.missing_keys()
    if missing and not allow_without_key:
        raise PolybotError([
            f"{var} is not set (the Poe access key of "
            f"{', '.join(n for n, b in sorted(server.bots.items()) if b.runtime.spec.access_key_env == var)}): "
            "export it, or pass --allow-without-key to serve without checking keys"
            for var in missing])
    return server


class _BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 before reading them whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                response = JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
