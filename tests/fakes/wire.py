"""Shared plumbing for fake provider servers: scripted replies, fault modes, recorded requests.

Each protocol module (openai_wire, anthropic_wire, gemini_wire) subclasses `FakeProvider` and
renders a `Reply` as that provider's streaming wire format. Tests drive the real SDKs at them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread

Fault = Literal["429", "500", "529", "401", "404", "hang", "stall", "drop", "malformed"]

#: How long "hang" and "stall" wait: far beyond any test timeout, yet bounded.
HANG_SECONDS = 30.0


@dataclass
class Reply:
    """What the fake does for one request."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " world"])
    delay: float = 0.0  # seconds before each chunk
    fault: Fault | None = None
    fault_after: int = 1  # for stall / drop / malformed: chunks sent before the fault
    retry_after: float | None = None  # Retry-After header on 429 / 500 / 529
    usage: tuple[int, int] = (10, 2)  # (input, output) tokens reported
    #: Verbatim replay: these bytes are the whole response body, served as they are (a recorded
    #: stream from tests/fakes/streams, or an error body), with `status` and `content_type`.
    raw: bytes | None = None
    status: int = 200
    content_type: str | None = None  # default: text/event-stream for 200, else application/json
    #: Send `raw` cut where a parser must join the pieces: every line in two halves (a multi-byte
    #: character may be split too) and every CRLF between its CR and LF, as TCP may deliver them.
    cut: bool = False


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    json: Any


class FakeProvider:
    """A scripted provider: each request takes the next queued Reply (or `default`)."""

    #: Paths the subclass serves (Starlette path syntax).
    paths: tuple[str, ...] = ()

    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        self.queue: deque[Reply] = deque(replies)
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self.base_url = ""
        self.app = Starlette(routes=[Route(p, self._handle, methods=["POST"]) for p in self.paths])

    def push(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(
            Recorded(request.url.path, dict(request.headers), json.loads(body) if body else None)
        )
        reply = self.queue.popleft() if self.queue else self.default
        if reply.raw is not None:
            return replay(reply)
        if reply.fault == "hang":
            await asyncio.sleep(HANG_SECONDS)
        if reply.fault in ("429", "500", "529", "401", "404"):
            status = int(reply.fault)
            headers = {"retry-after": str(reply.retry_after)} if reply.retry_after is not None else {}
            return JSONResponse(self.error_body(status), status_code=status, headers=headers)
        return StreamingResponse(self._events(reply, request), media_type="text/event-stream")

    async def _events(self, reply: Reply, request: Request) -> AsyncIterator[bytes]:
        sent = 0
        for event in self.start_events(reply, request):
            yield event
        for chunk in reply.chunks:
            if reply.fault in ("stall", "drop", "malformed") and sent == reply.fault_after:
                if reply.fault == "stall":
                    await asyncio.sleep(HANG_SECONDS)
                if reply.fault == "malformed":
                    yield b"data: {this is not json\n\n"
                    return
                raise ConnectionResetError("fake provider dropped the stream")
            if reply.delay:
                await asyncio.sleep(reply.delay)
            yield self.chunk_event(chunk, request)
            sent += 1
        for event in self.end_events(reply, request):
            yield event

    # --- protocol-specific, overridden by subclasses ---------------------------------------

    def error_body(self, status: int) -> Any:
        return {"error": {"message": f"fake error {status}", "code": status}}

    def start_events(self, reply: Reply, request: Request) -> list[bytes]:
        return []

    def chunk_event(self, text: str, request: Request) -> bytes:
        raise NotImplementedError

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        return []


def replay(reply: Reply) -> Response:
    """The recorded body byte for byte: no re-encoding, no added or dropped event."""
    raw = reply.raw
    assert raw is not None
    default = "text/event-stream; charset=utf-8" if reply.status == 200 else "application/json"
    headers = {"content-type": reply.content_type or default}
    if not reply.cut:
        return Response(raw, status_code=reply.status, headers=headers)

    async def pieces() -> AsyncIterator[bytes]:
        for piece in cut_lines(raw):
            yield piece
            await asyncio.sleep(0.001)  # let each piece leave, and be read, on its own

    return StreamingResponse(pieces(), status_code=reply.status, headers=headers)


def cut_lines(raw: bytes) -> list[bytes]:
    """`raw` cut in the middle of every line, before every blank line's LF (between the two of an
    event's end) and between the CR and LF of every CRLF."""
    offsets, start = [], 0
    for line in raw.splitlines(keepends=True):
        text = len(line.rstrip(b"\r\n"))
        offsets.append(start + text // 2)
        if line.endswith(b"\r\n"):
            offsets.append(start + text + 1)
        start += len(line)
    bounds = [0, *sorted({o for o in offsets if 0 < o < len(raw)}), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


F = TypeVar("F", bound=FakeProvider)


@contextmanager
def running(fake: F) -> Iterator[F]:
    """Serve `fake` on 127.0.0.1 and set its base_url."""
    with serve_in_thread(fake.app) as url:
        fake.base_url = url
        yield fake
