"""Run a small ASGI app on 127.0.0.1 in a background thread, for fake providers and polybot itself."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from polybot.listen import bind
from polybot.tls import tls_context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _PromptServer(uvicorn.Server):
    """uvicorn's Server, minus its waits: it notices `stop()` at once instead of at its next 0.1 s tick,
    and shuts down without its fixed 0.1 s sleep and 0.1 s polls. Hundreds of tests start and stop
    servers, and those waits were most of the suite's time."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = asyncio.Event()

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.on_tick(0)  # the Date header
        if not self.should_exit:
            await self._stopped.wait()

    def stop(self) -> None:
        self.should_exit = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        # Replies end in milliseconds; what is still open is a test's hanging stream: cut it.
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown  # type: ignore[operator]
        while (self.server_state.connections or self.server_state.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        for task in self.server_state.tasks:
            task.cancel()


@contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1; yields its base URL (no trailing slash). Stops on exit."""
    # polybot's own bind: TCP_NODELAY, or every streamed reply waits ~40 ms on a delayed ACK.
    sock = bind("127.0.0.1", port or 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=0.2)
    server = _PromptServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake server did not start")
        time.sleep(0.002)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        thread.join(timeout=5)
        sock.close()


def poe_session() -> httpx.AsyncClient:
    """The client fastapi_poe's `stream_request` makes for each call when given none, on polybot's
    shared TLS context: a context of its own costs every call 20-40 ms of CPU."""
    return httpx.AsyncClient(timeout=600, verify=tls_context())
