"""Poe query replies written as SSE bytes directly: the frames fastapi_poe's server would send.

fastapi_poe answers a query with a pydantic event per chunk, turned into a `ServerSentEvent` and
sent by sse-starlette's `EventSourceResponse` (a task group of four tasks per reply and a lock per
frame). Under load that is a fifth of a streaming process's CPU. `PoeStream` answers authorised
`query` requests to polybot's bots itself, with the same bytes: text events are encoded with the
same JSON encoder fastapi_poe uses, every other event by fastapi_poe's own event builders. It
keeps sse-starlette's headers, keep-alive pings and cancel-on-disconnect. Anything else (settings,
reports, a missing or wrong key, a body that is not a query) goes to fastapi_poe's route unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

import fastapi_poe as fp
from sse_starlette import ServerSentEvent
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from polybot.bot import PolyPoeBot

#: sse-starlette's interval between keep-alive comments.
PING_SECONDS = 15.0

#: The headers sse-starlette's EventSourceResponse sends, in its order.
HEADERS = [(b"cache-control", b"no-store"), (b"connection", b"keep-alive"), (b"x-accel-buffering", b"no"),
           (b"content-type", b"text/event-stream; charset=utf-8")]

#: Where app.py's guard leaves the query it parsed and validated, so a body is parsed once.
QUERY_SCOPE_KEY = "polybot.query"

_TEXT_HEAD = b'event: text\r\ndata: {"text": '
_TEXT_TAIL = b"}\r\n\r\n"
_DONE = b"event: done\r\ndata: {}\r\n\r\n"


def text_frame(text: str) -> bytes:
    """`event: text` as fastapi_poe sends it (json.dumps({"text": text}), CRLF line ends)."""
    return _TEXT_HEAD + encode_basestring_ascii(text).encode() + _TEXT_TAIL


async def frames(bot: PolyPoeBot, request: fp.QueryRequest, context: Any = None) -> AsyncIterator[bytes]:
    """Every frame of one reply, in the order and bytes of `PoeBot.handle_query`."""
    pending = bot._file_events_to_yield  # post_message_attachment's file events, sent first
    try:
        async for event in bot.get_response_with_context(request, context):
            if pending:
                for file_event in pending.pop(request.message_id, []):
                    yield file_event.encode()
            if type(event) is fp.PartialResponse and not event.attachment and not event.is_suggested_reply \
                    and not event.is_replace_response:
                yield text_frame(event.text)
                continue
            if isinstance(event, fp.PartialResponse) and event.attachment:
                a = event.attachment
                yield bot.file_event(url=a.url, content_type=a.content_type, name=a.name,
                                     inline_ref=a.inline_ref).encode()
            if isinstance(event, ServerSentEvent):
                yield event.encode()
            elif isinstance(event, fp.ErrorResponse):
                yield bot.error_event(event.text, raw_response=event.raw_response, allow_retry=event.allow_retry,
                                      error_type=event.error_type).encode()
            elif isinstance(event, fp.MetaResponse):
                yield bot.meta_event(content_type=event.content_type, refetch_settings=event.refetch_settings,
                                     linkify=event.linkify, suggested_replies=event.suggested_replies).encode()
            elif isinstance(event, fp.DataResponse):
                yield bot.data_event(event.metadata).encode()
            elif event.is_suggested_reply:
                yield bot.suggested_reply_event(event.text).encode()
            elif event.is_replace_response:
                yield bot.replace_response_event(event.text).encode()
            else:
                yield text_frame(event.text)
        for file_event in pending.pop(request.message_id, []):
            yield file_event.encode()
    except Exception as exc:  # what fastapi_poe sends for an escaped exception
        import logging

        logging.getLogger("uvicorn.default").exception("Error responding to query")
        yield bot.error_event("The bot encountered an unexpected issue.", raw_response=exc,
                              allow_retry=False).encode()
    yield _DONE


class PoeStream:
    """ASGI middleware: authorised Poe queries to `bots` answered by `frames`, the rest passed on."""

    def __init__(self, app: ASGIApp, bots: Mapping[str, PolyPoeBot]) -> None:
        self.app = app
        self.bots = bots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        bot = self.bots.get(path[1:])
        if bot is None or path != bot.path or not _authorised(scope, bot.access_key):
            await self.app(scope, receive, send)  # fastapi_poe answers (401, 403, 404) as before
            return
        # The guard in app.py read and validated the body already; a query it did not leave here
        # is no query fastapi_poe would parse, and its route decides.
        parsed = scope.get(QUERY_SCOPE_KEY)
        if not isinstance(parsed, fp.QueryRequest):
            await self.app(scope, receive, send)
            return
        # As fastapi_poe's route does: the key fields come from the bot, not from the body.
        key = bot.access_key or "<missing>"
        request = parsed.model_copy(update={"access_key": key, "api_key": key})
        await _stream(frames(bot, request), receive, send)


def _authorised(scope: Scope, access_key: str | None) -> bool:
    """What fastapi_poe's HTTPBearer and key check accept; anything else goes to them to refuse."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            credentials = credentials.strip()
            if scheme != "Bearer" or not credentials:
                return False
            return access_key is None or hmac.compare_digest(credentials.encode(), access_key.encode())
    return False


async def _stream(source: AsyncIterator[bytes], receive: Receive, send: Send) -> None:
    """Send `source` as the response body; pings while idle; stop it when the client goes away."""
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    pump = asyncio.ensure_future(_pump(source, send))
    watch = asyncio.ensure_future(_until_disconnect(receive))
    ping = asyncio.ensure_future(_ping(send))
    try:
        await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        ping.cancel()
        watch.cancel()
        if not pump.done():
            pump.cancel()  # the client went away: cancel the reply (and its provider call)
        with contextlib.suppress(asyncio.CancelledError):
            await pump
    if not watch.cancelled() and watch.done():
        return  # disconnected: nothing more to send
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _pump(source: AsyncIterator[bytes], send: Send) -> None:
    """Send every frame of `source`; frames that wait while a send is under way go out together.

    The reply runs in its own task and queues frames; this loop sends whatever is queued in one
    write. A client that keeps up gets each frame as soon as it exists; when the client or the
    loop falls behind, the waiting frames leave in one send instead of one each (the bytes are
    the same).
    """
    loop = asyncio.get_running_loop()
    queued: list[bytes] = []
    waiting: list[asyncio.Future[None]] = []
    producer = asyncio.ensure_future(_produce(source, queued, waiting))
    try:
        while True:
            if not queued:
                if producer.done():
                    break
                wake: asyncio.Future[None] = loop.create_future()
                waiting.append(wake)
                await wake
                continue
            body = queued[0] if len(queued) == 1 else b"".join(queued)
            queued.clear()
            await send({"type": "http.response.body", "body": body, "more_body": True})
        producer.result()  # an exception of the reply's task surfaces here
    finally:
        if not producer.done():
            producer.cancel()  # the client went away or a send failed: stop the reply
            with contextlib.suppress(asyncio.CancelledError):
                await producer


async def _produce(source: AsyncIterator[bytes], queued: list[bytes], waiting: list[asyncio.Future[None]]) -> None:
    try:
        async for frame in source:
            queued.append(frame)
            if waiting:
                wake = waiting.pop()
                if not wake.done():
                    wake.set_result(None)
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
        while waiting:
            wake = waiting.pop()
            if not wake.done():
                wake.set_result(None)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _ping(send: Send) -> None:
    while True:
        await asyncio.sleep(PING_SECONDS)
        comment = ServerSentEvent(comment=f"ping - {datetime.now(timezone.utc)}")
        await send({"type": "http.response.body", "body": comment.encode(), "more_body": True})
