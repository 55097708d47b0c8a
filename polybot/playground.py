"""The local playground `polybot dev` serves at `/`: every bot, a chat through the Poe code path,
the rendered prompt, and the build errors as a live overlay. Not part of `serve`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import fastapi_poe as fp
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from polybot.bot import Runtime, chosen_params
from polybot.controls import parameter_controls
from polybot.conversation import PROTOCOL_VERSION
from polybot.dev import Refresh, Workspace
from polybot.errors import Problem
from polybot.listing import key_status

PREFIX = "/_polybot"


class Playground:
    """State the page shows, and the routes that serve it; `publish` after every refresh."""

    def __init__(self, workspace: Workspace, *, open_access: bool) -> None:
        self.workspace = workspace
        self.open_access = open_access
        self.problems: list[Problem] = []
        self.version = 0
        self.changed = asyncio.Condition()

    def publish(self, result: Refresh) -> None:
        """Record a refresh's problems and wake every open page (called on the event loop)."""
        self.problems = sorted(set(result.problems), key=lambda p: (p.path, p.line or 0))
        self.version += 1

        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()

        try:
            asyncio.get_running_loop().create_task(notify())
        except RuntimeError:
            pass  # no loop yet: the first page load reads the state directly

    def state(self) -> dict[str, Any]:
        bots = []
        for name, runtime in sorted(self.workspace.runtimes.items()):
            spec = runtime.spec
            config = self.workspace.pool.configs.get(spec.provider)
            controls = parameter_controls(spec.controls)
            bots.append({
                "name": name, "description": spec.description, "provider": spec.provider, "model": spec.model,
                "key": key_status(config.api_key_env if config else None, os.environ),
                "introduction": spec.poe.introduction_message or "",
                "controls": controls.model_dump(exclude_none=True)["sections"][0]["controls"] if controls else [],
            })
        return {"version": self.version, "bots": bots, "problems": [str(p) for p in self.problems]}

    def allowed(self, request: Request, bot: str | None = None) -> bool:
        """On loopback, always; bound elsewhere, only with --open-playground or that bot's access key."""
        client = request.client.host if request.client else ""
        try:
            if ipaddress.ip_address(client).is_loopback and _is_loopback(request.url.hostname or ""):
                return True
        except ValueError:
            pass
        if self.open_access:
            return True
        runtime = self.workspace.runtimes.get(bot or "")
        key = os.environ.get(runtime.spec.access_key_env, "") if runtime else ""
        return bool(key) and request.headers.get("authorization") == f"Bearer {key}"

    # --- routes ---------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if not self.allowed(request):
            return _forbidden()
        return HTMLResponse(resources.files("polybot").joinpath("playground.html").read_text("utf-8"))

    async def get_state(self, request: Request) -> Response:
        if not self.allowed(request):
            return _forbidden()
        return JSONResponse(self.state())

    async def events(self, request: Request) -> Response:
        """Server-sent `state` events: now, then after every rebuild."""
        if not self.allowed(request):
            return _forbidden()

        async def stream() -> AsyncIterator[bytes]:
            seen = -1
            while True:
                if seen != self.version:
                    seen = self.version
                    yield f"event: state\ndata: {json.dumps(self.state())}\n\n".encode()
                async with self.changed:
                    try:
                        await asyncio.wait_for(self.changed.wait(), timeout=15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def _target(self, request: Request) -> tuple[Runtime, fp.QueryRequest] | Response:
        """The bot a chat or prompt request names and the conversation it sends, or the refusal."""
        name = request.path_params["name"]
        if not self.allowed(request, name):
            return _forbidden()
        runtime = self.workspace.runtimes.get(name)
        if runtime is None:
            return JSONResponse({"detail": f"no bot named {name!r}"}, status_code=404)
        return runtime, _query(await request.json())

    async def chat(self, request: Request) -> Response:
        """One reply through the same path a Poe query takes, as Poe-style server-sent events."""
        target = await self._target(request)
        if isinstance(target, Response):
            return target
        runtime, query = target

        async def stream() -> AsyncIterator[bytes]:
            async for event in runtime.respond(query):
                yield _event(event)
            yield b"event: done\ndata: {}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def prompt(self, request: Request) -> Response:
        """The system prompt rendered for the page's current conversation."""
        target = await self._target(request)
        if isinstance(target, Response):
            return target
        runtime, query = target
        try:
            return JSONResponse({"prompt": runtime.render_prompt(query, chosen_params(runtime.spec, query))})
        except Exception as exc:  # noqa: BLE001 - shown in the page as the located error it is
            return JSONResponse({"error": str(exc)})

    def mount(self, app: Any) -> None:
        app.add_route("/", self.page, methods=["GET"])
        app.add_route(f"{PREFIX}/state", self.get_state, methods=["GET"])
        app.add_route(f"{PREFIX}/events", self.events, methods=["GET"])
        app.add_route(PREFIX + "/chat/{name}", self.chat, methods=["POST"])
        app.add_route(PREFIX + "/prompt/{name}", self.prompt, methods=["POST"])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _forbidden() -> Response:
    return JSONResponse({"detail": "the playground answers on 127.0.0.1 only; bound elsewhere it needs the "
                                   "bot's access key (Authorization: Bearer ...) or `polybot dev --open-playground`"},
                        status_code=403)


def _query(body: dict[str, Any]) -> fp.QueryRequest:
    messages = [fp.ProtocolMessage(role="bot" if m.get("role") == "bot" else "user", content=str(m.get("content", "")))
                for m in body.get("messages", [])]
    if messages and body.get("params"):
        messages[-1].parameters = dict(body["params"])
    return fp.QueryRequest(version=PROTOCOL_VERSION, type="query", query=messages, user_id="playground",
                           conversation_id=str(body.get("conversation_id", "playground")),
                           message_id=uuid.uuid4().hex)


def _event(event: Any) -> bytes:
    if isinstance(event, fp.ErrorResponse):
        name, data = "error", {"text": event.text, "allow_retry": event.allow_retry}
    elif isinstance(event, fp.MetaResponse):
        name, data = "meta", {"suggested_replies": event.suggested_replies}
    elif event.is_suggested_reply:
        name, data = "suggested_reply", {"text": event.text}
    elif event.is_replace_response:
        name, data = "replace_response", {"text": event.text}
    else:
        name, data = "text", {"text": event.text}
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
