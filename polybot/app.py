"""The ASGI app: every bot at POST /<Name>, through fastapi_poe, swappable while serving."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import fastapi_poe as fp
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polybot.bot import PolyPoeBot
from polybot.config import plain_errors
from polybot.errors import PolybotError, shown
from polybot.manifest import Manifest
from polybot.poe_sse import QUERY_SCOPE_KEY, PoeStream
from polybot.runtime import Runtime, runtimes_from_manifest
from polybot.security import DevAccess, bearer, header, keys_match

#: Poe queries carry whole conversations; anything larger than this is refused cleanly.
MAX_BODY_BYTES = 8 * 1024 * 1024


class BotServer:
    """Holds the app and its bots; `put` and `remove` change what is served without a restart."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, dev: DevAccess | None = None) -> None:
        """`dev` set: the `polybot dev` rules (Host allowlist, no cross-site writes, keyless bots on
        loopback only). Unset (`serve`): bots with a key check it; keyless bots answer anyone."""
        self.environ = os.environ if environ is None else environ
        self.dev = dev
        self.bots: dict[str, PolyPoeBot] = {}
        #: Called with a bot's name before a request for it is answered (dev compiles it on demand).
        self.ensure: Callable[[str], None] | None = None
        self.app = FastAPI(title="polybot", docs_url=None, redoc_url=None, openapi_url=None)
        # Starlette wraps each added middleware around the ones before it: the guard runs first.
        self.app.add_middleware(PoeStream, bots=self.bots)  # innermost: queries, written as SSE bytes
        self.app.add_middleware(_Guard, server=self, limit=MAX_BODY_BYTES)

        async def health(request: Request) -> Response:
            # Bot names only for callers who could query them anyway.
            if self.trusted(request.scope):
                return JSONResponse({"status": "ok", "bots": sorted(self.bots)})
            return JSONResponse({"status": "ok"})

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
            # A bot whose key is unset answers anyone (dev: loopback only, see _Guard); `serve`
            # refuses that unless told otherwise.
            fp.make_app([bot], allow_without_key=True, app=self.app)
        finally:
            quiet.setLevel(level)
        self.bots[name] = bot

    def remove(self, name: str) -> None:
        if self.bots.pop(name, None) is None:
            return
        path = f"/{name}"
        self.app.router.routes[:] = [r for r in self.app.router.routes if getattr(r, "path", None) != path]

    def trusted(self, scope: Scope) -> bool:
        """A loopback caller of `dev`, or a caller presenting one of the served bots' access keys."""
        if self.dev is not None and self.dev.is_local(scope):
            return True
        given = bearer(scope)
        return any(keys_match(given, b.access_key) for b in list(self.bots.values()) if b.access_key)

    def missing_keys(self) -> list[str]:
        return sorted({b.runtime.spec.access_key_env for b in self.bots.values() if not b.access_key})


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


POE_REQUESTS: dict[str, str] = {"query": "QueryRequest", "settings": "SettingsRequest",
                                 "report_feedback": "ReportFeedbackRequest",
                                 "report_reaction": "ReportReactionRequest", "report_error": "ReportErrorRequest"}


def poe_body_problem(body: bytes) -> str | None:
    """Why `body` is not a Poe request fastapi_poe can take (one line), or None when it is."""
    return parse_poe_body(body)[1]


def parse_poe_body(body: bytes) -> tuple[BaseModel | None, str | None]:
    """(the Poe request in `body`, None), or (None, why it is not one fastapi_poe can take).

    The request's key fields are empty: fastapi_poe fills them from the bot, not from the body.
    Every problem names the field and shows the value received.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return None, f"request body is not JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if not isinstance(data, dict):
        return None, f"request body must be a JSON object, got {type(data).__name__}"
    kind = data.get("type")
    model = getattr(fp, POE_REQUESTS.get(kind, ""), None) if isinstance(kind, str) else None
    if model is None:
        return None, f"type: expected one of {', '.join(POE_REQUESTS)}, got {shown(kind)}"
    try:
        return model.model_validate({**data, "access_key": "", "api_key": ""}), None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = plain_errors(exc, "body")[0][0]
        received = "" if error["type"] == "missing" else f", got {shown(error['input'])}"
        return None, f"invalid {kind} request: {where}: {error['msg']}{received}"
    except (ValueError, TypeError, RecursionError) as exc:
        return None, f"invalid {kind} request: {type(exc).__name__}"


class _Guard:
    """Every request passes here first.

    Bodies over `limit` bytes get 413, counted as they stream (chunked bodies too). A bot's
    access key is compared in constant time (401). A body that is not a Poe request gets 400 with
    one line. Under `dev`: a Host outside the allowlist or a cross-site browser write gets 403,
    and a bot without an access key answers loopback callers only.
    """

    def __init__(self, app: ASGIApp, server: BotServer, limit: int) -> None:
        self.app = app
        self.server = server
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        dev = self.server.dev
        if dev is not None and not dev.host_allowed(scope):
            await _refuse(scope, receive, send, 403,
                          f"host {header(scope, b'host')!r} is not served: polybot dev answers "
                          f"{dev.allowed_hosts_text()}; to reach it by another name, pass --allow-host NAME")
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if dev is not None and method not in ("GET", "HEAD", "OPTIONS") and dev.cross_site(scope):
            await _refuse(scope, receive, send, 403, "cross-site request refused: polybot dev takes writes "
                                                     "only from its own pages and from non-browser clients")
            return
        length = header(scope, b"content-length")
        if length.isdigit() and int(length) > self.limit:
            await _refuse(scope, receive, send, 413, f"request body over {self.limit} bytes")
            return
        if method in ("GET", "HEAD", "OPTIONS"):
            refusal = self._remote_openai_problem(scope, None)
            if refusal is not None:
                await _refuse(scope, receive, send, 403, refusal)
                return
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, self.limit)
        if body is None:
            await _refuse(scope, receive, send, 413, f"request body over {self.limit} bytes")
            return
        if isinstance(body, BaseException):
            return  # the client went away
        refusal = self._remote_openai_problem(scope, body)
        if refusal is not None:
            await _refuse(scope, receive, send, 403, refusal)
            return
        if self.server.ensure is not None and method == "POST":
            model = _json_field(body, "model") if scope["path"].startswith("/v1/") else None
            self.server.ensure(model if isinstance(model, str) else scope["path"][1:])
        bot = self.server.bots.get(scope["path"][1:]) if method == "POST" else None
        if bot is not None:
            problem = self._bot_problem(bot, scope, body)
            if problem is not None:
                status, detail = problem
                await _refuse(scope, receive, send, status, detail)
                return
        await self.app(scope, _replay(body, receive), send)

    def _remote_openai_problem(self, scope: Scope, body: bytes | None) -> str | None:
        """Under `dev`, the OpenAI-compatible endpoint serves a bot without its key variable set to
        loopback callers only, like the Poe routes; a remote caller needs a key the server knows."""
        dev = self.server.dev
        if dev is None or not scope["path"].startswith("/v1/") or dev.is_local(scope):
            return None
        bots = list(self.server.bots.values())
        keys = {b.runtime.spec.name: self.server.environ.get(b.runtime.spec.openai_api_key_env) for b in bots}
        given = bearer(scope)
        if not any(keys_match(given, key) for key in keys.values() if key):
            return ("polybot dev serves its OpenAI-compatible endpoint on 127.0.0.1 only, unless called with "
                    "a key set on the server (POLYBOT_API_KEY or a bot's [openai_api] key_env)")
        model = _json_field(body, "model") if body is not None else None
        name = next((n for n in keys if isinstance(model, str) and n.lower() == model.lower()), None)
        if name is not None and not keys[name]:
            return f"{name} has no OpenAI API key set, so polybot dev serves it on 127.0.0.1 only"
        return None

    def _bot_problem(self, bot: PolyPoeBot, scope: Scope, body: bytes) -> tuple[int, str] | None:
        if bot.access_key:
            if not keys_match(bearer(scope), bot.access_key):
                return 401, "Invalid access key"
        elif self.server.dev is not None and not self.server.dev.is_local(scope):
            env = bot.runtime.spec.access_key_env
            return 403, (f"{bot.runtime.spec.name} has no access key, so polybot dev serves it on 127.0.0.1 "
                         f"only; set {env} to reach it from elsewhere")
        parsed, problem = parse_poe_body(body)
        if isinstance(parsed, fp.QueryRequest):
            scope[QUERY_SCOPE_KEY] = parsed
        return (400, problem) if problem is not None else None


def _json_field(body: bytes, name: str) -> object:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data.get(name) if isinstance(data, dict) else None


async def _read_body(receive: Receive, limit: int) -> bytes | None | BaseException:
    """The whole body, None once it passes `limit` bytes, or an exception if the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return ConnectionError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    headers: dict[str, str] = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)
