"""The local playground `polybot dev` serves at `/`: every bot, a chat through the Poe code path,
the rendered prompt, and the build errors as a live overlay. Not part of `serve`.

Each reply streams as Poe-style server-sent events plus what only the playground shows: every tool
call and its result (`tool`), files (`file`), and at the end a `trace` (the prompt as rendered, each
provider request as sent, attempts, fallback, failures, finish reason, timings, tokens). Files the
page attaches are held in memory and served here, so a bot receives them as it would from Poe's
CDN: a URL on the attachment, and `parsed_content` for text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import functools
import json
import os
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

import fastapi_poe as fp
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from polybot.config import ProviderConfig, plain_errors
from polybot.controls import parameter_controls
from polybot.conversation import query_request
from polybot.errors import PolybotError, Problem, sorted_problems
from polybot.listing import key_status
from polybot.livebuild import LiveBuild, Refresh
from polybot.manifest import manifest_path
from polybot.prompts import render_off_loop
from polybot.providers.base import ChatRequest, Chunk, Provider, Usage
from polybot.reliability import ProviderPool, ReplyInfo, ToolActivity
from polybot.runtime import Runtime, chosen_params
from polybot.security import DevAccess, keys_match

PREFIX = "/_polybot"
#: The page sends this run's token in this header with every write; other pages cannot read it.
TOKEN_HEADER = "x-polybot-token"
#: Largest file the page may attach, and how many (most recent) files are kept in memory.
MAX_UPLOAD = 5 * 1024 * 1024  # base64 in JSON stays under the server's 8 MB body limit
MAX_FILES = 64
#: Content types whose text goes into the attachment's `parsed_content`, as Poe does.
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml", "application/yaml",
              "application/toml", "application/javascript", "application/x-python")


class Playground:
    """State the page shows, and the routes that serve it; `publish` after every refresh."""

    def __init__(self, workspace: LiveBuild, access: DevAccess) -> None:
        self.workspace = workspace
        self.access = access
        self.problems: list[Problem] = []
        self.version = 0
        self.changed = asyncio.Condition()
        self.files: OrderedDict[str, _File] = OrderedDict()
        self._build: tuple[int, dict[str, Runtime], ProviderPool] | None = None

    async def aclose(self) -> None:
        """Close the provider clients of the last build (the workspace closes its own)."""
        if self._build is not None:
            await self._build[2].aclose()
            self._build = None

    def publish(self, result: Refresh) -> None:
        """Record a refresh's problems and wake every open page (called on the event loop)."""
        self.problems = sorted_problems(result.problems)
        self.version += 1

        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()

        try:
            asyncio.get_running_loop().create_task(notify())
        except RuntimeError:
            pass  # no loop yet: the first page load reads the state directly

    def state(self) -> dict[str, Any]:
        """What the page lists: each bot's name, provider, model, key status and whether it is compiled
        (`ready`), waiting for the background (`compiling`) or broken and serving its last good version
        (`errors`). A few dozen bytes a bot, so the list stays small at 1000 bots; the rest of a bot is
        fetched when it is picked (`details`)."""
        workspace = self.workspace
        bots = []
        for name in sorted(set(workspace.runtimes) | workspace.pending):
            runtime = workspace.runtimes.get(name)
            if runtime is None:
                bots.append({"name": name, "provider": "", "model": "", "key": "", "status": "compiling"})
                continue
            spec = runtime.spec
            config = workspace.pool.configs.get(spec.provider)
            bots.append({"name": name, "provider": spec.provider, "model": spec.model,
                         "key": key_status(config.api_key_env if config else None, os.environ),
                         "status": "compiling" if name in workspace.pending else
                                   "errors" if name in workspace.failed else "ready"})
        built = manifest_path(workspace.root).is_file()
        return {"version": self.version, "bots": bots, "problems": [str(p) for p in self.problems],
                "built": built}

    def details(self, name: str) -> dict[str, Any] | None:
        """One bot as the page shows it once picked (compiled first if it is still pending): its
        metadata, key status, introduction, parameter controls and whether it has tests."""
        workspace = self.workspace
        workspace.ensure(name)
        runtime = workspace.runtimes.get(name)
        if runtime is None:
            return None
        spec = runtime.spec
        config = workspace.pool.configs.get(spec.provider)
        controls = parameter_controls(spec.controls, spec.layout)
        return {
            **spec.metadata(),
            "key": key_status(config.api_key_env if config else None, os.environ),
            "introduction": spec.poe.introduction_message or "",
            "sections": controls.model_dump(exclude_none=True)["sections"] if controls else [],
            "tests": (workspace.root / "bots" / name / "tests.toml").is_file(),
        }

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
        # Only the page's own script runs (its nonce), whatever a reply's Markdown tries.
        nonce = secrets.token_urlsafe(16)
        html = html.replace("{{POLYBOT_TOKEN}}", self.access.token).replace("<script>", f'<script nonce="{nonce}">')
        policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
                  "img-src 'self' https: data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                  "frame-ancestors 'none'")
        return HTMLResponse(html, headers={
            "X-Frame-Options": "DENY", "Content-Security-Policy": policy,
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def get_state(self, request: Request) -> Response:
        if not self.allowed(request):
            return _forbidden()
        return JSONResponse(self.state())

    async def get_bot(self, request: Request) -> Response:
        if not self.allowed(request):
            return _forbidden()
        name = request.path_params["name"]
        found = self.details(name)
        if found is None:
            return JSONResponse({"detail": f"no bot named {name!r}"}, status_code=404)
        return JSONResponse(found)

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
                newer = functools.partial(lambda last: self.version != last, seen)
                async with self.changed:
                    try:  # wait_for checks first: a publish() while the last event was sent is not lost
                        await asyncio.wait_for(self.changed.wait_for(newer), timeout=15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def _target(self, request: Request) -> tuple[Runtime, fp.QueryRequest] | Response:
        """The bot a chat or prompt request names and the conversation it sends, or the refusal.

        `source: "build"` picks the bot as last built (build/manifest.json) instead of the source."""
        name = request.path_params["name"]
        refusal = self.write_refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = _ChatBody.model_validate_json(await request.body())
        except ValidationError as exc:
            where, message = plain_errors(exc, "body")[0]
            return JSONResponse({"detail": f"invalid request: {where}: {message}"}, status_code=400)
        if body.source == "build":
            built = await self._built(name)
            if isinstance(built, str):
                return JSONResponse({"detail": built}, status_code=404)
            runtime = built
        else:
            self.workspace.ensure(name)
            found = self.workspace.runtimes.get(name)
            if found is None:
                return JSONResponse({"detail": f"no bot named {name!r}"}, status_code=404)
            runtime = found
        try:
            query = _query(body, self.files, str(request.base_url).rstrip("/"))
        except KeyError as exc:
            return JSONResponse({"detail": f"attachment {exc.args[0]!r} is no longer held by polybot dev "
                                           "(it keeps the latest files only, in memory); attach it again"},
                                status_code=400)
        return runtime, query

    async def _built(self, name: str) -> Runtime | str:
        """The bot `name` as last built, or why there is none."""
        from polybot.manifest import load_manifest
        from polybot.runtime import runtimes_from_manifest

        root = self.workspace.root
        path = manifest_path(root)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return "there is no build to compare with: run `polybot build` first"
        if self._build is None or self._build[0] != stamp:
            try:
                runtimes = runtimes_from_manifest(load_manifest(path), root)
            except PolybotError as exc:
                return str(exc)
            await self.aclose()
            pool = runtimes[0].pool if runtimes else ProviderPool({})
            self._build = (stamp, {r.spec.name: r for r in runtimes}, pool)
        runtime = self._build[1].get(name)
        if runtime is None:
            return f"{name} is not in the last build (build/manifest.json): run `polybot build`"
        return runtime

    async def chat(self, request: Request) -> Response:
        """One reply through the same path a Poe query takes, as Poe-style server-sent events,
        then its `trace`."""
        target = await self._target(request)
        if isinstance(target, Response):
            return target
        runtime, query = target
        sent: list[dict[str, Any]] = []
        traced = copy.copy(runtime)
        traced.pool = _TracingPool(runtime.pool, sent, self.files)

        async def stream() -> AsyncIterator[bytes]:
            info = ReplyInfo()
            started = time.monotonic()
            first: float | None = None
            tools: list[str] = []
            prompt = await _rendered(runtime, query)
            events = traced.respond(query, info)
            try:
                async for event in events:
                    if first is None and isinstance(event, fp.PartialResponse) and event.text:
                        first = time.monotonic() - started
                    if isinstance(event, ToolActivity):
                        tools.append(event.tool)
                    yield _event(event)
            finally:  # stopped in the page: end the provider stream now, not when collected
                close = getattr(events, "aclose", None)
                if close is not None:
                    await close()
            usage = info.usage
            trace = {
                "prompt": prompt, "requests": sent, "outcome": info.outcome if info.attempts else None,
                "provider": info.provider, "model": info.model, "attempts": info.attempts,
                "fallback": info.fallback, "failures": info.failures, "tool_rounds": info.tool_rounds,
                "tools": tools, "finish_reason": usage.finish_reason,
                "ttft_ms": info.ttft_ms if info.attempts else _ms(first),
                "duration_ms": info.duration_ms if info.attempts else _ms(time.monotonic() - started),
                "tokens": {"input": usage.input_tokens, "output": usage.output_tokens,
                           "reasoning": usage.reasoning_tokens, "cached": usage.cached_tokens},
            }
            yield f"event: trace\ndata: {json.dumps(trace)}\n\n".encode()
            yield b"event: done\ndata: {}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def upload(self, request: Request) -> Response:
        """Hold one attached file (JSON: name, content_type, base64 data) for the conversation."""
        refusal = self.write_refusal(request)
        if refusal is not None:
            return refusal
        limit = MAX_UPLOAD * 4 // 3 + 4096
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _too_large()
        raw = bytearray()
        async for block in request.stream():
            raw += block
            if len(raw) > limit:
                return _too_large()
        try:
            body = _Upload.model_validate_json(bytes(raw))
            data = base64.b64decode(body.data, validate=True)
        except (ValidationError, binascii.Error, ValueError):
            return JSONResponse({"detail": "invalid upload: send {name, content_type, data (base64)}"},
                                status_code=400)
        if len(data) > MAX_UPLOAD:
            return _too_large()
        file_id = uuid.uuid4().hex
        self.files[file_id] = _File(body.name, body.content_type or "application/octet-stream", data)
        while len(self.files) > MAX_FILES:
            self.files.popitem(last=False)
        return JSONResponse({"id": file_id, "name": body.name, "content_type": self.files[file_id].content_type,
                             "url": _file_url(str(request.base_url).rstrip("/"), file_id, body.name)})

    async def file(self, request: Request) -> Response:
        """An attached file, as Poe's CDN would serve it to the bot (and the page)."""
        if not self.allowed(request):
            return _forbidden()
        held = self.files.get(request.path_params["id"])
        if held is None:
            return JSONResponse({"detail": "no such file (polybot dev keeps the latest files only)"},
                                status_code=404)
        inline = held.content_type.startswith("image/") and held.content_type != "image/svg+xml"
        return Response(held.data, media_type=held.content_type, headers={
            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": "inline" if inline else "attachment", "Cache-Control": "no-store"})

    async def tests(self, request: Request) -> Response:
        """Run one bot's tests.toml (offline, from its recordings) and say which pass."""
        from polybot.bottests import run_tests

        refusal = self.write_refusal(request)
        if refusal is not None:
            return refusal
        name = request.path_params["name"]
        self.workspace.ensure(name)
        if name not in self.workspace.runtimes:
            return JSONResponse({"detail": f"no bot named {name!r}"}, status_code=404)
        try:
            report = await asyncio.to_thread(run_tests, self.workspace.root, [name])
        except PolybotError as exc:
            return JSONResponse({"error": str(exc)})
        return JSONResponse({
            "outcomes": [{"name": o.name, "line": o.line, "passed": o.passed, "failures": o.failures,
                          "seconds": round(o.seconds, 3)} for o in report.outcomes],
            "problems": [str(p) for p in report.problems],
        })

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
        app.add_route(PREFIX + "/bots/{name}", self.get_bot, methods=["GET"])
        app.add_route(PREFIX + "/chat/{name}", self.chat, methods=["POST"])
        app.add_route(PREFIX + "/prompt/{name}", self.prompt, methods=["POST"])
        app.add_route(PREFIX + "/tests/{name}", self.tests, methods=["POST"])
        app.add_route(f"{PREFIX}/upload", self.upload, methods=["POST"])
        app.add_route(PREFIX + "/files/{id}/{filename}", self.file, methods=["GET"])


def _forbidden() -> Response:
    return JSONResponse({"detail": "the playground answers on this machine only (http://127.0.0.1:PORT/); "
                                   "from elsewhere, tunnel to it (ssh -L PORT:127.0.0.1:PORT host)"},
                        status_code=403)


def _too_large() -> Response:
    return JSONResponse({"detail": f"files attached in the playground may be at most {MAX_UPLOAD // 2**20} MB"},
                        status_code=413)


@dataclass(frozen=True, slots=True)
class _File:
    name: str
    content_type: str
    data: bytes = field(repr=False)


def _file_url(base: str, file_id: str, name: str) -> str:
    from urllib.parse import quote

    return f"{base}{PREFIX}/files/{file_id}/{quote(name or 'file', safe='')}"


class _Upload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="file", max_length=255)
    content_type: str = Field(default="", max_length=255)
    data: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = "user"
    content: str = ""
    #: Ids of files the page uploaded (`/_polybot/upload`).
    attachments: list[str] = Field(default_factory=list)


class _ChatBody(BaseModel):
    """What the playground page posts."""

    model_config = ConfigDict(extra="ignore")

    messages: list[_Message] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    conversation_id: str = "playground"
    source: Literal["workspace", "build"] = "workspace"


def _query(body: _ChatBody, files: dict[str, _File] | None = None, base: str = "") -> fp.QueryRequest:
    """Poe's QueryRequest for the page's conversation (KeyError: an attachment no longer held)."""
    messages = [fp.ProtocolMessage(role="bot" if m.role == "bot" else "user", content=m.content,
                                   attachments=[_attachment(i, (files or {})[i], base) for i in m.attachments])
                for m in body.messages]
    if messages and body.params:
        messages[-1].parameters = dict(body.params)
    return query_request(messages, user_id="playground", conversation_id=body.conversation_id)


def _attachment(file_id: str, held: _File, base: str) -> fp.Attachment:
    """The attachment as Poe sends it: a URL, and the text of a text file (expand_text_attachments)."""
    parsed = held.data.decode("utf-8", "replace") if held.content_type.startswith(TEXT_TYPES) else None
    return fp.Attachment(url=_file_url(base, file_id, held.name), content_type=held.content_type,
                         name=held.name, parsed_content=parsed)


async def _rendered(runtime: Runtime, query: fp.QueryRequest) -> str:
    try:
        return await render_off_loop(runtime.render_prompt, query, chosen_params(runtime.spec, query))
    except Exception as exc:  # noqa: BLE001 - shown in the trace as the located error it is
        return f"(the prompt does not render: {exc})"


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


class _TracedProvider(Provider):
    """An adapter that notes each request it is given (as recordings summarise it: no secrets) and
    hands it files attached in the playground as bytes, since no provider can reach this machine."""

    def __init__(self, real: Provider, sent: list[dict[str, Any]], files: dict[str, _File]) -> None:
        super().__init__(real.name, real.config)
        self.real = real
        self.sent = sent
        self.files = files

    def vision(self, model: str) -> bool:
        return self.real.vision(model)

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        from polybot.recordings import request_summary

        self.sent.append({"provider": self.name, **request_summary(self.config.kind, request)})
        async with aclosing(self.real.stream(self._inline(request), usage)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                yield chunk

    def _inline(self, request: ChatRequest) -> ChatRequest:
        marker = f"{PREFIX}/files/"
        messages = []
        for m in request.messages:
            images = tuple(replace(i, data=held.data) if marker in i.url and i.data is None and
                           (held := self.files.get(i.url.split(marker, 1)[1].split("/", 1)[0])) else i
                           for i in m.images)
            messages.append(replace(m, images=images) if images != m.images else m)
        return replace(request, messages=tuple(messages))

    async def aclose(self) -> None:
        pass  # the client belongs to the pool this one wraps


class _TracingPool(ProviderPool):
    """The runtime's pool, with every adapter traced for one playground reply."""

    def __init__(self, base: ProviderPool, sent: list[dict[str, Any]], files: dict[str, _File]) -> None:
        super().__init__(base.configs)
        self.base = base
        self.sent = sent
        self.files = files

    def get(self, name: str) -> Provider:
        return _TracedProvider(self.base.get(name), self.sent, self.files)

    def update(self, configs: dict[str, ProviderConfig]) -> None:
        self.base.update(configs)

    async def aclose(self) -> None:
        pass


def _event(event: Any) -> bytes:
    if isinstance(event, ToolActivity):
        name, data = "tool", {"tool": event.tool, "arguments": event.arguments, "result": event.result,
                              "ok": event.ok}
    elif isinstance(event, fp.PartialResponse) and event.attachment is not None:
        att = event.attachment
        name, data = "file", {"url": att.url, "content_type": att.content_type, "name": att.name}
    elif isinstance(event, fp.PartialResponse) and event.data is not None and not event.text:
        name, data = "data", {"data": event.data}
    elif isinstance(event, fp.ErrorResponse):
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
