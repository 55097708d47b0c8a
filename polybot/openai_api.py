"""Every bot as an OpenAI-compatible model: POST /v1/chat/completions and GET /v1/models (SPEC §9).

A request becomes a Poe `QueryRequest` and runs through the bot's `Runtime` exactly as a Poe query
does (prompt, hooks, fallback chain, outcomes); the reply's events become `chat.completion` or
`chat.completion.chunk` objects. What cannot be said in Chat Completions is decided here:

- A reply the runtime replaces after text was streamed (a failover mid-reply) cannot be taken
  back: the stream ends with an error event instead, so the client knows to retry. A non-streamed
  reply simply carries the replacement. If the replacement continues what was sent, only the rest
  is streamed.
- The notice polybot appends to a truncated reply for Poe users is left out: OpenAI clients get
  `finish_reason: "length"` instead.
- A failure before the first token is an HTTP error (429 and 5xx keep the provider's status and
  Retry-After); after it, an `{"error": ...}` event ends the stream, as OpenAI's own API does. A
  first token slower than FIRST_TOKEN_WAIT starts the stream with SSE keep-alive comments.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import mimetypes
import secrets
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import fastapi_poe as fp
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from polybot.conversation import query_request
from polybot.openai_request import ApiError, ChatCompletionRequest, parse_request
from polybot.reliability import TRUNCATED_NOTICE, ReplyInfo

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from polybot.bot import PolyPoeBot
    from polybot.runtime import Runtime


class BotServer(Protocol):
    """What the endpoint mounts on: `polybot.app.BotServer` (named here by shape, so that app.py,
    which mounts the endpoint, is not imported back)."""

    @property
    def app(self) -> Starlette: ...

    @property
    def bots(self) -> Mapping[str, PolyPoeBot]: ...

    @property
    def environ(self) -> Mapping[str, str]: ...

#: The variable holding the endpoint's key, unless a bot names its own (`[openai_api] key_env`).
DEFAULT_KEY_ENV = "POLYBOT_API_KEY"

#: Seconds a stream waits for the first text before starting (until then a failure is an HTTP
#: error), and between keep-alive comments after that.
FIRST_TOKEN_WAIT = 5.0
KEEP_ALIVE = 15.0

#: SPEC §6 outcomes -> OpenAI finish reasons. "tool_call" reaches a client only once tool calls
#: are passed through (issue 14); until then a tool call ends in an error, as on Poe.
FINISH_REASONS = {"ok": "stop", "truncated": "length", "refused": "content_filter", "tool_call": "tool_calls"}


def mount_openai(server: BotServer, *, open_without_key: bool) -> OpenAIEndpoint:
    """Serve /v1/chat/completions and /v1/models on `server`'s app.

    `open_without_key`: a bot whose key variable is unset answers anyone (dev, or serve with
    --allow-without-key); otherwise such a bot is not exposed on this endpoint. Then, too, a
    `[poe] kind = "api"` bot needs no Poe access key: without one, its Poe path gets a random key
    and answers no one (Poe reaches it here).
    """
    if not open_without_key:
        for bot in server.bots.values():
            if bot.runtime.spec.poe.kind == "api" and not bot.access_key:
                bot.access_key = secrets.token_urlsafe(32)
    endpoint = OpenAIEndpoint(server, open_without_key=open_without_key)
    server.app.add_route("/v1/chat/completions", endpoint.chat_completions, methods=["POST"])
    server.app.add_route("/v1/models", endpoint.models, methods=["GET"])
    server.app.add_route("/v1/models/{model:path}", endpoint.model, methods=["GET"])
    # Last: any other path or method under /v1 gets OpenAI's error shape, not Starlette's text.
    server.app.add_route("/v1/{rest:path}", endpoint.unknown,
                         methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    return endpoint


def endpoint_notice(server: BotServer, *, open_without_key: bool) -> str:
    """One line for `serve`'s start-up: which bots the endpoint exposes, and how to expose the rest."""
    closed = sorted({b.runtime.spec.openai_api_key_env for b in server.bots.values()
                     if not server.environ.get(b.runtime.spec.openai_api_key_env)})
    if not closed or open_without_key:
        return "OpenAI-compatible endpoint: /v1/chat/completions" + (
            " (bots without a key answer anyone: --allow-without-key)" if closed else "")
    return (f"OpenAI-compatible endpoint: bots keyed by {', '.join(closed)} are not exposed while "
            "that variable is unset; set it (or pass --allow-without-key)")


class OpenAIEndpoint:
    """The two routes, reading the server's bots at each request (dev swaps them while serving)."""

    def __init__(self, server: BotServer, *, open_without_key: bool) -> None:
        self.server = server
        self.open_without_key = open_without_key
        self.created = int(time.time())

    # --- routes ---------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        token = _bearer(request)
        names = [name for name in sorted(self.server.bots) if self._opens(name, token)]
        if not names and self.server.bots:
            return self._unauthorized(token, None).response()
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": self.created, "owned_by": "polybot"} for name in names]})

    async def model(self, request: Request) -> Response:
        """GET /v1/models/{model}: one bot, as `client.models.retrieve()` reads it."""
        token = _bearer(request)
        try:
            runtime = self._authorize(token, request.path_params["model"])
        except ApiError as exc:
            return exc.response()
        return JSONResponse({"id": runtime.spec.name, "object": "model", "created": self.created,
                             "owned_by": "polybot"})

    async def unknown(self, request: Request) -> Response:
        path = request.url.path
        if path in ("/v1/chat/completions", "/v1/models") or path.startswith("/v1/models/"):
            allowed = "POST" if path == "/v1/chat/completions" else "GET"
            return ApiError(405, f"{request.method} is not allowed on {path}: send {allowed}",
                            headers={"allow": allowed}).response()
        return ApiError(404, f"Unknown request URL: {request.method} {path}. polybot serves POST "
                        "/v1/chat/completions and GET /v1/models.", code="unknown_url").response()

    async def chat_completions(self, request: Request) -> Response:
        token = _bearer(request)
        try:
            body = parse_request(await request.body())
        except ApiError as exc:
            # Only a client with a key learns what is wrong with its request.
            opened = any(self._opens(name, token) for name in self.server.bots)
            return (exc if opened else self._unauthorized(token, None)).response()
        try:
            runtime = self._authorize(token, body.model)
            query = to_query(body, runtime)
        except ApiError as exc:
            return exc.response()
        query = query.model_copy(update={"user_id": caller(body, token)})  # whom per-user limits count
        reply = _Reply(runtime, query, runtime.spec.name)
        if not body.stream:
            return await reply.complete()
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return await reply.stream(include_usage)

    # --- keys ------------------------------------------------------------------------------

    def _opens(self, name: str, token: str | None) -> bool:
        bot = self.server.bots.get(name)
        if bot is None:
            return False
        expected = self.server.environ.get(bot.runtime.spec.openai_api_key_env)
        if not expected:
            return self.open_without_key
        return token is not None and hmac.compare_digest(token.encode(), expected.encode())

    def _authorize(self, token: str | None, model: str) -> Runtime:
        name = self._name(model)
        if name is not None and self._opens(name, token):
            return self.server.bots[name].runtime
        if any(self._opens(other, token) for other in self.server.bots):
            # A key that opens other bots learns only that this one is not there for it.
            raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                           code="model_not_found")
        raise self._unauthorized(token, name)

    def _unauthorized(self, token: str | None, name: str | None) -> ApiError:
        if name is not None and not self.open_without_key:
            variable = self.server.bots[name].runtime.spec.openai_api_key_env
            if not self.server.environ.get(variable):
                return ApiError(401, f"This server does not expose `{name}`: {variable} is not set on the "
                                "server (set it, or serve with --allow-without-key)", code="invalid_api_key")
        if token is None:
            return ApiError(401, "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
                            code="invalid_api_key")
        return ApiError(401, f"Incorrect API key provided: send the key set on the server in {DEFAULT_KEY_ENV} "
                        "(or in the bot's [openai_api] key_env).", code="invalid_api_key")

    def _name(self, model: str) -> str | None:
        """The bot called `model`; like Poe, names match without regard to case."""
        if model in self.server.bots:
            return model
        folded = model.lower()
        return next((n for n in self.server.bots if n.lower() == folded), None)


def caller(body: ChatCompletionRequest, token: str | None) -> str:
    """Who asks, for per-user limits: the request's `user`, else its API key (hashed: a key is never
    a counter's name), else everyone without a key together."""
    if body.user:
        return f"openai:{body.user}"
    if token is not None:
        return f"openai:key-{hashlib.sha256(token.encode()).hexdigest()[:16]}"
    return "openai"


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


# --- OpenAI request -> Poe query ------------------------------------------------------------------

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "bot"}


def to_query(body: ChatCompletionRequest, runtime: Runtime) -> fp.QueryRequest:
    """The Poe query an OpenAI request stands for; ApiError(400) for what cannot be mapped."""
    _check_tools(body)
    if body.n not in (None, 1):
        raise ApiError(400, "n: polybot returns one choice per request; send n = 1", param="n")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4:
        raise ApiError(400, "stop: at most 4 sequences", param="stop")
    raw, tool_calls, tool_results = _tool_round(list(body.messages))
    messages = [_message(i, m) for i, m in enumerate(raw)]
    parameters = _parameters(body, runtime)
    if parameters:
        last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
        if last is not None:
            messages[last] = messages[last].model_copy(update={"parameters": parameters})
    controls = _control_names(runtime)
    temperature = None if "temperature" in controls else body.temperature
    return query_request(
        messages,
        user_id=f"openai:{body.user}" if body.user else "openai",
        conversation_id=f"c-{uuid.uuid4().hex}", message_id=f"m-{uuid.uuid4().hex}",
        temperature=temperature, stop_sequences=stop,
        tools=_check_tools(body) or None, tool_calls=tool_calls, tool_results=tool_results,
    )


def _check_tools(body: ChatCompletionRequest) -> list[fp.ToolDefinition]:
    """The client's tools, in Poe's form: the model may call them, and the calls come back."""
    tools = []
    for i, tool in enumerate(body.tools or []):
        try:
            tools.append(fp.ToolDefinition.model_validate(tool))
        except ValidationError:
            raise ApiError(400, f"tools[{i}]: expected {{\"type\": \"function\", \"function\": {{\"name\": ..., "
                           "\"parameters\": ...}}}", param=f"tools[{i}]") from None
    return [] if body.tool_choice == "none" else tools


def _tool_round(messages: list[Any]) -> tuple[list[Any], list[Any] | None, list[Any] | None]:
    """The conversation without its last tool round, and that round as Poe's tool_calls and
    tool_results (what the client ran since the model asked). Earlier rounds become text."""
    from fastapi_poe.types import FunctionCallDefinition, ToolCallDefinition, ToolResultDefinition

    end = len(messages)
    while end and messages[end - 1].get("role") in ("tool", "function"):
        end -= 1
    calls = results = None
    if end < len(messages) and end and messages[end - 1].get("tool_calls"):
        asked = messages[end - 1]
        names = {c.get("id"): c.get("function", {}).get("name", "") for c in asked["tool_calls"]}
        calls = [ToolCallDefinition(id=c.get("id", ""), type="function", function=FunctionCallDefinition(
            name=c.get("function", {}).get("name", ""), arguments=c.get("function", {}).get("arguments", "")))
            for c in asked["tool_calls"]]
        results = [ToolResultDefinition(role="tool", name=names.get(m.get("tool_call_id"), ""),
                                        tool_call_id=m.get("tool_call_id", ""), content=_text(m.get("content")))
                   for m in messages[end:]]
        said = [{"role": "assistant", "content": asked["content"]}] if asked.get("content") else []
        messages = messages[:end - 1] + said
    flat = []
    for m in messages:
        if m.get("role") in ("tool", "function"):
            flat.append({"role": "user", "content": f"[result of tool call {m.get('tool_call_id', '')}]: "
                                                    f"{_text(m.get('content'))}"})
        elif m.get("tool_calls"):
            asked_for = ", ".join(f"{c.get('function', {}).get('name')}({c.get('function', {}).get('arguments')})"
                                  for c in m["tool_calls"])
            flat.append({"role": "assistant", "content": f"{_text(m.get('content'))}[called {asked_for}]"})
        else:
            flat.append(m)
    return flat, calls, results


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _message(i: int, m: Mapping[str, Any]) -> fp.ProtocolMessage:
    role = _ROLES.get(m.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise ApiError(400, f"messages[{i}].role: expected one of system, developer, user, assistant but "
                       f"received {m.get('role')!r}", param=f"messages[{i}].role")
    text, attachments = _content(i, m.get("content"), images=role == "user")
    name = m.get("name")
    sender = fp.Sender(name=name) if isinstance(name, str) and name else None
    return fp.ProtocolMessage(role=role, content=text, attachments=attachments, sender=sender)  # type: ignore[arg-type]


def _content(i: int, content: Any, *, images: bool) -> tuple[str, list[fp.Attachment]]:
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise ApiError(400, f"messages[{i}].content: expected a string or an array of parts",
                       param=f"messages[{i}].content")
    texts: list[str] = []
    attachments: list[fp.Attachment] = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and images:
            attachments.append(_image(where, part.get("image_url")))
        elif kind == "refusal":
            continue
        else:
            raise ApiError(400, f"{where}: polybot takes text parts, and image_url parts in user messages; "
                           f"received {kind!r}", param=where)
    return "\n".join(texts), attachments


def _image(where: str, image: Any) -> fp.Attachment:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
        raise ApiError(400, f"{where}.image_url.url: expected an http(s) URL or a data:image/... URL",
                       param=f"{where}.image_url.url")
    if url.startswith("data:"):
        content_type = url[5:].split(";", 1)[0].split(",", 1)[0]
        return fp.Attachment(url=url, content_type=content_type, name="image")
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "image"
    guessed = mimetypes.guess_type(name)[0]
    # Without a telling extension the type is a guess; vision APIs sniff the bytes anyway.
    content_type = guessed if guessed and guessed.startswith("image/") else "image/jpeg"
    return fp.Attachment(url=url, content_type=content_type, name=name)


def _control_names(runtime: Runtime) -> set[str]:
    return {str(c["parameter_name"]) for c in runtime.spec.controls if "parameter_name" in c}


def _parameters(body: ChatCompletionRequest, runtime: Runtime) -> dict[str, Any]:
    """Values for the bot's declared controls (extra body fields), and the client's output limit."""
    controls = _control_names(runtime)
    extra = body.model_extra or {}
    parameters = {name: value for name, value in extra.items() if name in controls}
    if "temperature" in controls and body.temperature is not None:
        parameters["temperature"] = body.temperature
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None:
        # A bot's own max_tokens is its creator's cap; a `max_tokens` control is the user's pick.
        cap = runtime.spec.max_tokens
        parameters["max_tokens"] = limit if "max_tokens" in controls or cap is None else min(limit, cap)
    return parameters


# --- Poe events -> OpenAI reply --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Replace:
    text: str


@dataclass(slots=True)
class _Reply:
    """One reply: the runtime's events as text pieces, then how it ended (`error`, `info`)."""

    runtime: Runtime
    query: fp.QueryRequest
    model: str
    info: ReplyInfo = field(default_factory=ReplyInfo)
    error: fp.ErrorResponse | None = None
    #: Calls of tools the client supplied (chat-completion delta shape), returned to it.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    async def pieces(self) -> AsyncGenerator[str | _Replace, None]:
        held: str | None = None  # the truncation notice, until the outcome says whether it is one
        events = self.runtime.respond(self.query, self.info)
        try:
            async for event in events:
                if isinstance(event, fp.ErrorResponse):
                    self.error = event
                    continue
                if isinstance(event, fp.MetaResponse):
                    continue
                if event.is_replace_response:
                    held = None
                    yield _Replace(event.text)
                    continue
                if event.data and not event.text:
                    for choice in event.data.get("choices") or ():
                        self.tool_calls += (choice.get("delta") or {}).get("tool_calls") or []
                    continue  # other relayed `json` events have no Chat Completions form
                text = event.text or _attachment_text(event.attachment)
                if not text:
                    continue
                if held is not None:
                    yield held
                    held = None
                if text == TRUNCATED_NOTICE:
                    held = text
                    continue
                yield text
        finally:
            # A client that went away closes the provider stream at once, through every layer.
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
        if held is not None and self.info.outcome != "truncated":
            yield held

    @property
    def refused(self) -> bool:
        return self.error is not None and self.info.outcome == "refused"

    def finish_reason(self) -> str:
        # A hook's own reply reports no outcome: it ended, so it stopped.
        return "content_filter" if self.refused else FINISH_REASONS.get(self.info.outcome, "stop")

    def usage(self) -> dict[str, Any]:
        u = self.info.usage
        prompt, completion = u.input_tokens or 0, u.output_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": u.cached_tokens or 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens or 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    def failure(self) -> ApiError:
        """The error object for a reply that ended in an error event."""
        assert self.error is not None
        message, status, info = self.error.text or "The reply failed.", self.info.status, self.info
        headers: dict[str, str] = {}
        if info.retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(info.retry_after)))
            headers["retry-after-ms"] = str(round(info.retry_after * 1000))
        if info.outcome == "limited":  # polybot's own limits (docs/limits.md): nothing was charged
            if info.code != "rate_limit_exceeded" and info.status == 429:
                headers["x-should-retry"] = "false"  # a daily cap: the SDKs' quick retries cannot help
            return ApiError(info.status or 429, message, type="requests" if info.status == 429 else "server_error",
                            code=info.code, headers=headers)
        if self.error.error_type == "user_message_too_long":
            return ApiError(400, message, param="messages", code="context_length_exceeded")
        if status == 429:
            return ApiError(429, message, type="requests", code="rate_limit_exceeded", headers=headers)
        if status is not None and status >= 500:
            return ApiError(status, message, type="server_error", headers=headers)
        if self.error.allow_retry:
            return ApiError(502, message, type="server_error", code="upstream_error", headers=headers)
        # Configuration (a provider key, model or prompt to fix on the server): retrying cannot help.
        return ApiError(500, message, type="server_error", code="bot_error", headers={"x-should-retry": "false"})

    # --- non-streamed --------------------------------------------------------------------

    async def complete(self) -> Response:
        parts: list[str] = []
        async with aclosing(self.pieces()) as pieces:
            async for piece in pieces:
                if isinstance(piece, _Replace):
                    parts = [piece.text]
                else:
                    parts.append(piece)
        if self.error is not None and not self.refused:
            return self.failure().response()
        text = "".join(parts)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not (self.refused or
                                                                                         self.tool_calls) else None,
                   "refusal": self.error.text if self.refused and self.error else None, "annotations": []}
        if self.tool_calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in self.tool_calls]
        return JSONResponse({
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason()}],
            "usage": self.usage(), "system_fingerprint": None,
        })

    # --- streamed ------------------------------------------------------------------------

    async def stream(self, include_usage: bool) -> Response:
        pieces = self.pieces()
        # Nothing is sent before the first text, for a while: a reply that fails before it is an
        # HTTP error with the provider's status. A slow first token (a reasoning model) starts the
        # stream anyway, kept alive with SSE comments so that proxies do not drop it.
        first = asyncio.ensure_future(anext(pieces, None))
        await asyncio.wait({first}, timeout=FIRST_TOKEN_WAIT)
        if first.done() and first.result() is None and self.error is not None and not self.refused:
            await pieces.aclose()
            return self.failure().response()
        return StreamingResponse(self._events(first, pieces, include_usage), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def _events(self, first: asyncio.Future[str | _Replace | None],
                      pieces: AsyncGenerator[str | _Replace, None], include_usage: bool) -> AsyncIterator[bytes]:
        head = (f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
                f'"model":{json.dumps(self.model)},"system_fingerprint":null,"choices":[{{"index":0,"delta":')
        tail = '}]' + (',"usage":null' if include_usage else '') + '}\n\n'
        more = ',"logprobs":null,"finish_reason":null' + tail

        def chunk(delta: dict[str, Any]) -> bytes:
            return (head + json.dumps(delta, separators=(",", ":")) + more).encode()

        try:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            while not first.done():
                await asyncio.wait({first}, timeout=KEEP_ALIVE)
                if not first.done():
                    yield b": keep-alive\n\n"
        finally:
            if not first.done():  # the client went away while waiting: stop the reply
                first.cancel()
                await asyncio.wait({first})
                await pieces.aclose()
        sent: list[str] = []
        async with aclosing(pieces):
            piece = first.result()
            while piece is not None:
                if isinstance(piece, _Replace):
                    so_far = "".join(sent)
                    if not piece.text.startswith(so_far):
                        # Text already streamed cannot be taken back: end with an error, never with
                        # two replies glued together. The client retries (or asks with stream=false).
                        yield _error_event("The reply was restarted after a provider failure mid-stream and "
                                           "cannot be corrected in a stream; retry the request",
                                           "reply_restarted")
                        return
                    text = piece.text[len(so_far):]
                else:
                    text = piece
                if text:
                    sent.append(text)
                    yield (head + '{"content":' + json.dumps(text) + '}' + more).encode()
                piece = await anext(pieces, None)
        if self.error is not None and not self.refused:
            failure = self.failure()
            yield b"data: " + json.dumps(failure.body).encode() + b"\n\n"
            return
        if self.refused and self.error is not None:
            yield chunk({"refusal": self.error.text})
        if self.tool_calls:
            yield chunk({"tool_calls": self.tool_calls})
        yield (head + '{},"logprobs":null,"finish_reason":' + json.dumps(self.finish_reason()) + tail).encode()
        if include_usage:
            yield (f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
                   f'"model":{json.dumps(self.model)},"system_fingerprint":null,"choices":[],'
                   f'"usage":{json.dumps(self.usage(), separators=(",", ":"))}}}\n\n').encode()
        yield b"data: [DONE]\n\n"


def _error_event(message: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _attachment_text(attachment: fp.Attachment | None) -> str:
    """A file the bot attached, as a Markdown link (an image inline)."""
    if attachment is None:
        return ""
    bang = "!" if attachment.content_type.startswith("image/") else ""
    return f"\n\n{bang}[{attachment.name}]({attachment.url})\n\n"
