"""A lean HTTP/1.1 transport for the provider SDKs' streaming calls, on asyncio's own sockets.

The SDK still builds each request (URL, auth, headers, JSON body) and turns error statuses into
its error types; httpx2 still follows its timeouts and decodes the body. Only the wire work under
them changes. httpcore's pool re-examines every connection it holds when a request starts or
ends (O(n) per request, O(n²) for a wave of n concurrent replies) and opens an anyio cancel scope
around every socket read; at 1000 concurrent streams that outweighed the streaming itself. Here
an idle connection is popped from a list, and a read is one `asyncio.timeout` around a buffered
stream read. Failures raise httpx2's own exceptions (ConnectError, ConnectTimeout, ReadTimeout,
ReadError, RemoteProtocolError), so the SDK maps them exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from polybot.tls import tls_context

#: The longest status line plus headers accepted from a provider.
MAX_HEAD = 256 * 1024


class LeanTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive: at most `max_idle` idle connections per origin are kept."""

    def __init__(self, max_idle: int = 1000) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._max_idle = max_idle

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.scheme
        port = url.port or (443 if scheme == "https" else 80)
        origin = (scheme, url.host, port)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        head += [b"%s: %s\r\n" % (k, v) for k, v in request.headers.raw]
        if body and "content-length" not in request.headers:
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        data = b"".join(head) + body
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable():
                try:
                    return await conn.exchange(data, timeouts, self._release)
                except _Stale:
                    continue  # the server closed it while idle: a fresh connection follows
        conn = await self._connect(origin, timeouts)
        try:
            return await conn.exchange(data, timeouts, self._release)
        except _Stale:
            raise httpx2.RemoteProtocolError("Server disconnected without sending a response.") from None

    async def _connect(self, origin: tuple[str, str, int], timeouts: dict[str, Any]) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            tls = tls_context()
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=MAX_HEAD,
                                                               server_hostname=host if tls else None)
        except TimeoutError:
            raise httpx2.ConnectTimeout("timed out connecting") from None
        except OSError as exc:
            raise httpx2.ConnectError(str(exc)) from exc
        return _Connection(origin, reader, writer)

    def _release(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _Stale(Exception):
    """A kept-alive connection the server had closed before it answered."""


class _Connection:
    def __init__(self, origin: tuple[str, str, int], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.used = False

    def usable(self) -> bool:
        if self.writer.is_closing() or self.reader.at_eof():
            self.close()
            return False
        return True

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def exchange(self, data: bytes, timeouts: dict[str, Any], release: Any) -> httpx2.Response:
        reused, self.used = self.used, True
        reader = self.reader
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeouts.get("write")):
                await self.writer.drain()
            async with asyncio.timeout(timeouts.get("read")):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            self.close()
            raise httpx2.ReadTimeout("timed out reading the response") from None
        except asyncio.IncompleteReadError as exc:
            self.close()
            if reused and not exc.partial:
                raise _Stale() from None
            raise httpx2.RemoteProtocolError("Server disconnected without sending a response.") from None
        except asyncio.LimitOverrunError:
            self.close()
            raise httpx2.RemoteProtocolError("response head too long") from None
        except OSError as exc:
            self.close()
            if reused:
                raise _Stale() from None
            raise httpx2.ReadError(str(exc)) from exc
        lines = head[:-4].split(b"\r\n")
        try:
            version, status, *_ = lines[0].split(b" ", 2)
            code = int(status)
            headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(b":") for line in lines[1:])]
        except ValueError:
            self.close()
            raise httpx2.RemoteProtocolError("malformed response head") from None
        chunked, length, keep = False, None, version == b"HTTP/1.1"
        for k, v in headers:
            name = k.lower()
            if name == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif name == b"content-length":
                length = int(v) if v.isdigit() else None
            elif name == b"connection":
                keep = keep and b"close" not in v.lower()
        if chunked:
            length = None
        read_timeout = timeouts.get("read")
        stream = _Body(self, chunked, length, keep and (chunked or length is not None), read_timeout, release)
        return httpx2.Response(code, headers=headers, stream=stream,
                               extensions={"http_version": version, "reason_phrase": b""})


class _Body(httpx2.AsyncByteStream):
    """A response body (chunked, sized, or up to EOF); the connection is kept only when read whole."""

    def __init__(self, conn: _Connection, chunked: bool, length: int | None, keep: bool,
                 read_timeout: float | None, release: Any) -> None:
        self._conn = conn
        self._chunked = chunked
        self._length = length
        self._keep = keep
        self._timeout = read_timeout
        self._release = release
        self._done = False
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        loop = asyncio.get_running_loop()
        # One timer per response, not one per read: it re-arms itself while data keeps coming,
        # and cuts the connection once a read has waited `timeout` seconds.
        last = loop.time()
        timed_out = False
        timer: asyncio.TimerHandle | None = None
        timeout = self._timeout

        def check() -> None:
            nonlocal timer, timed_out
            assert timeout is not None
            idle = loop.time() - last
            if idle >= timeout:
                timed_out = True
                self._conn.abort()
            else:
                timer = loop.call_later(timeout - idle, check)

        if timeout is not None:
            timer = loop.call_later(timeout, check)
        try:
            if self._chunked:
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass  # trailers
                        break
                    piece = await reader.readexactly(size + 2)
                    last = loop.time()
                    yield piece[:-2]
            elif self._length is not None:
                left = self._length
                while left > 0:
                    piece = await reader.read(min(left, 65536))
                    if not piece:
                        raise asyncio.IncompleteReadError(b"", left)
                    last = loop.time()
                    left -= len(piece)
                    yield piece
            else:
                while True:
                    piece = await reader.read(65536)
                    if not piece:
                        break
                    last = loop.time()
                    yield piece
            if timed_out:
                raise asyncio.IncompleteReadError(b"", None)
            self._done = True
        except (asyncio.IncompleteReadError, ValueError, OSError) as exc:
            if timed_out:
                raise httpx2.ReadTimeout("timed out reading the response") from None
            if isinstance(exc, OSError):
                raise httpx2.ReadError(str(exc)) from exc
            raise httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body") from None
        except asyncio.LimitOverrunError:
            raise httpx2.RemoteProtocolError("chunk header too long") from None
        finally:
            if timer is not None:
                timer.cancel()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._done and self._keep:
            self._release(self._conn)
        else:
            self._conn.close()
