"""The one Redis connection of a process, shared by the limits and the response cache (docs/limits.md).

redis-py (the `polybot-poe[redis]` extra) is imported only when a Redis URL is configured. Every
call is bounded by TIMEOUT, retries included. A failed call marks Redis down for DOWN_FOR seconds:
calls in that time fail at once, so a dead or unreachable Redis costs a request at most one
TIMEOUT, never a hang. An outage is logged once when it starts and once when it ends, with the
URL's password redacted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("polybot")

#: Shares the counters (and the cache) of every worker and replica; wins over `[limits] redis`.
REDIS_ENV = "POLYBOT_REDIS_URL"
#: Seconds one Redis call may take (a limit check is one or two calls); then it counts as down.
TIMEOUT = 1.0
#: Seconds after a failure during which Redis is not tried again.
DOWN_FOR = 2.0

T = TypeVar("T")


class RedisDown(Exception):
    """Redis did not answer in time (or is marked down): the caller applies `on_redis_down`."""


def redact(url: str) -> str:
    """The URL with its password (and a user name given with it) replaced by ***: safe to print."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    except ValueError:
        return "<an unparsable Redis URL>"


class RedisLink:
    """A lazily opened redis.asyncio client with bounded, outage-aware calls."""

    def __init__(self, url: str, consequence: str) -> None:
        """`consequence`: what polybot does while Redis is down, for the log line (policy wording)."""
        self.url = url
        self.shown = redact(url)
        self.consequence = consequence
        self._client: Any = None
        self._down_until = 0.0
        self._outage = False

    def client(self) -> Any:
        """The redis.asyncio.Redis client, created on first use (on the event loop that serves)."""
        if self._client is None:
            try:
                import redis.asyncio
                from redis.asyncio.retry import Retry
                from redis.backoff import NoBackoff
            except ImportError:
                raise RedisDown("redis-py is not installed: pip install 'polybot-poe[redis]'") from None
            # No retries of its own: a retry would outlast TIMEOUT; the next request tries again.
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))
        return self._client

    async def call(self, what: Callable[[], Awaitable[T]]) -> T:
        """`what()` within TIMEOUT; RedisDown when it fails or Redis is marked down."""
        if time.monotonic() < self._down_until:
            raise RedisDown(self.shown)
        try:
            async with asyncio.timeout(TIMEOUT):  # no task per call, unlike wait_for
                result = await what()
        except Exception as exc:  # noqa: BLE001 - any failure of the connection, the server or the client
            self._down_until = time.monotonic() + DOWN_FOR
            if not self._outage:
                self._outage = True
                reason = str(exc) if isinstance(exc, RedisDown) else type(exc).__name__
                log.warning("Redis at %s is unreachable (%s): %s until it answers again",
                            self.shown, reason, self.consequence)
            raise RedisDown(self.shown) from None
        if self._outage:
            self._outage = False
            log.warning("Redis at %s answers again: limits and cache are shared again", self.shown)
        return result

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await asyncio.wait_for(client.aclose(), TIMEOUT)
            except Exception:  # noqa: BLE001 - closing a dead connection: nothing left to do
                pass
