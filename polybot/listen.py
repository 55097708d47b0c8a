"""Opening the listening socket before anything is printed, so a busy port is one clear line."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polybot.errors import PolybotError

#: Seconds uvicorn waits for open responses (the playground's event stream never ends) after Ctrl-C.
#: uvicorn types it as int, but hands it to asyncio.wait_for, which takes any number of seconds.
GRACEFUL_SHUTDOWN = 0.5


def bind(host: str, port: int) -> socket.socket:
    """A bound socket for `host:port`, as uvicorn would bind it; PolybotError with a hint otherwise."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it Nagle holds each reply's first frame behind the headers for a delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PolybotError([f"port {port} on {host} is already in use: stop the program using it, "
                                f"or pick another port, e.g. --port {port + 1 if port < 65535 else 8081}"]) \
                from None
        raise PolybotError([f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port"]) \
            from None
    sock.set_inheritable(True)
    return sock


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


async def serve(app: ASGIApp, sock: socket.socket) -> int:
    """Serve `app` on `sock` until Ctrl-C (exit code 130) or SIGTERM (0), stopping within a second:
    open streams (the playground's events, replies in flight) end instead of holding the server."""
    stopping = asyncio.Event()
    config = uvicorn.Config(_EndStreamsOnExit(app, stopping), log_level="warning",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)  # type: ignore[arg-type]
    server = _Server(config, stopping)
    await server.serve(sockets=[sock])
    return 130 if signal.SIGINT in server.signals else 0


def run(app: ASGIApp, sock: socket.socket) -> int:
    """`serve` on its own event loop; closes `sock`."""
    try:
        return asyncio.run(serve(app, sock))
    finally:
        sock.close()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event) -> None:
        super().__init__(config)
        self.stopping = stopping
        self.signals: list[int] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        super().handle_exit(sig, frame)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)


class _EndStreamsOnExit:
    """Tell every open response its client has gone once the server is stopping."""

    def __init__(self, app: ASGIApp, stopping: asyncio.Event) -> None:
        self.app = app
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def receive_or_exit() -> Message:
            if self.stopping.is_set():
                return {"type": "http.disconnect"}
            message = asyncio.ensure_future(receive())
            stop = asyncio.ensure_future(self.stopping.wait())
            try:
                await asyncio.wait({message, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not message.done():
                    message.cancel()
            return message.result() if message.done() and not message.cancelled() else {"type": "http.disconnect"}

        state = {"started": False, "done": False}

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["done"] = True
            await send(message)

        await self.app(scope, receive_or_exit, tracked_send)
        if state["started"] and not state["done"] and self.stopping.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})  # end it cleanly
