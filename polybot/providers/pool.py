"""Connection pools for many concurrent provider streams: one pool split into small shards.

httpcore's connection pool re-examines every connection it holds each time a request starts or
ends, so a pool of n connections costs O(n) per request and O(n²) per wave of n concurrent
replies: at 1000 concurrent streams that bookkeeping outweighs the streaming itself. A
`ShardedTransport` holds several small pools (sharing one TLS context) and sends each request to
the pool with the fewest requests in flight; each pool's bookkeeping stays small.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2

#: Connections per shard: the bookkeeping per request is proportional to this, not to the total.
SHARD_SIZE = 64


class ShardedTransport(httpx2.AsyncBaseTransport):
    """Spreads requests over pools of at most SHARD_SIZE connections, `max_connections` in all."""

    def __init__(self, max_connections: int = 1024, max_keepalive: int = 1024, **options: Any) -> None:
        shards = max(1, -(-max_connections // SHARD_SIZE))
        verify = httpx2.create_ssl_context()  # one TLS context for every shard (it is not small)
        limits = httpx2.Limits(max_connections=-(-max_connections // shards),
                               max_keepalive_connections=max(1, max_keepalive // shards))
        self._shards = [httpx2.AsyncHTTPTransport(verify=verify, limits=limits, **options) for _ in range(shards)]
        self._busy = [0] * shards

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        busy = self._busy
        index = busy.index(min(busy))
        busy[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            busy[index] -= 1
            raise
        response.stream = _Release(response.stream, busy, index)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Release(httpx2.AsyncByteStream):
    """A response body that gives its shard's slot back when it is closed."""

    def __init__(self, stream: Any, busy: list[int], index: int) -> None:
        self._stream = stream
        self._busy = busy
        self._index = index

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if self._index >= 0:
            self._busy[self._index] -= 1
            self._index = -1
        await self._stream.aclose()
