"""The local playground `polybot dev` serves at `/`: every bot, a chat through the Poe code path,
the rendered prompt, and the build errors as a live overlay. Not part of `serve`.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import fastapi_poe as fp
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from polybot.bot import Runtime, chosen_params
from polybot.controls import parameter_controls
from polybot.conversation import PROTOCOL_VERSION
from polybot.dev import Refresh, Workspace
from polybot.errors import Problem
from polybot.listing import key_status
from polybot.prompts import render_off_loop
from polybot.security import DevAccess, keys_match

PREFIX = "/_polybot"
#: The page sends this run's token in this header with every write; other pages cannot read it.
TOKEN_HEADER = "x-polybot-token"


class Playground:
    """State the page shows, and the routes that serve it; `publish` after every refresh."""

    def __init__(self, workspace: Workspace, access: DevAccess) -> None:
        self.workspace = workspace
        self.access = access
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

    def allowed(self, request: Request) -> bool:
        """The playground is for this machine only: a loopback client naming a loopback host."""
        return self.access.is_local(request.scope)

    def write_refusal(self, request: Request) -> Response | None:
        """Why a chat or prompt request is refused (it spends provider keys), or None.

        It must come from this machine, as JSON, from the playground's own page: same origin and
        carrying this run's token, which only the page (served to loopback) knows.
        """
        if not self.allowed(request):
            return _forbidden()
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return JSONResponse({"detail": "send JSON (content-type: application/json)"}, status_code=415)
        if self.access.cross_site(request.scope) or \
                not keys_match(request.headers.get(TOKEN_HEADER), self.access.token):
            return JSONResponse({"detail": "playground writes come only from the playground page "
                                           f"(same origin, with its {TOKEN_HEADER} header); reload it"},
                                status_code=403)
        return None

    # --- routes ---------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if not self.allowed(request):
            return _forbidden()
        html = resources.files("polybot").joinpath("playground.html").read_text("utf-8")
        return HTMLResponse(html.replace("{{POLYBOT_TOKEN}}", self.access.token), headers={
            "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

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
        refusal = self.write_refusal(request)
        if refusal is not None:
            return refusal
        runtime = self.workspace.runtimes.get(name)
        if runtime is None:
            return JSONResponse({"detail": f"no bot named {name!r}"}, status_code=404)
        try:
            body = _ChatBody.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return JSONResponse({"detail": f"invalid request: {where}: {first['msg']}"}, status_code=400)
        return runtime, _query(body)

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
            prompt = await render_off_loop(runtime.render_prompt, query, chosen_params(runtime.spec, query))
            return JSONResponse({"prompt": prompt})
        except Exception as exc:  # noqa: BLE001 - shown in the page as the located error it is
            return JSONResponse({"error": str(exc)})

    def mount(self, app: Any) -> None:
        app.add_route("/", self.page, methods=["GET"])
        app.add_route(f"{PREFIX}/state", self.get_state, methods=["GET"])
        app.add_route(f"{PREFIX}/events", self.events, methods=["GET"])
        app.add_route(PREFIX + "/chat/{name}", self.chat, methods=["POST"])
        app.add_route(PREFIX + "/prompt/{name}", self.prompt, methods=["POST"])


def _forbidden() -> Response:
    return JSONResponse({"detail": "the playground answers on this machine only (http://127.0.0.1:PORT/); "
                                   "from elsewhere, tunnel to it (ssh -L PORT:127.0.0.1:PORT host)"},
                        status_code=403)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = "user"
    content: str = ""


class _ChatBody(BaseModel):
    """What the playground page posts."""

    model_config = ConfigDict(extra="ignore")

    messages: list[_Message] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    conversation_id: str = "playground"


def _query(body: _ChatBody) -> fp.QueryRequest:
    messages = [fp.ProtocolMessage(role="bot" if m.role == "bot" else "user", content=m.content)
                for m in body.messages]
    if messages and body.params:
        messages[-1].parameters = dict(body.params)
    return fp.QueryRequest(version=PROTOCOL_VERSION, type="query", query=messages, user_id="playground",
                           conversation_id=body.conversation_id, message_id=uuid.uuid4().hex)


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
