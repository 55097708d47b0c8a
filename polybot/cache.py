"""An exact-match response cache for deterministic requests (`[cache]`, docs/limits.md).

The key is a hash of the fully resolved provider requests of the whole failover chain (provider,
model, system prompt, messages, temperature, output limit, stop sequences, params) and the bot: the
same key means the same request reached the same models. Only deterministic requests are cached
(temperature 0, no tools), and only replies that ended `ok`. Entries live in this process (the
newest MAX_ENTRIES) or, with Redis configured for the limits, in the same Redis for `ttl` seconds,
shared by every worker and replica. A Redis outage is a cache miss.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from polybot.redisconn import RedisDown, RedisLink
from polybot.reliability import Step

#: Entries an in-process cache keeps (the least recently used go first).
MAX_ENTRIES = 1024
PREFIX = "polybot:cache:"


@dataclass(frozen=True, slots=True)
class CachedReply:
    text: str
    provider: str
    model: str
    finish_reason: str | None = None


def cache_key(bot: str, chain: Sequence[Step]) -> str | None:
    """The key of a deterministic reply, or None when the request is not one (temperature not 0,
    or tools the model may call)."""
    if any(step.request.temperature != 0 or step.request.tools for step in chain):
        return None
    described = [{"provider": step.provider, **{k: v for k, v in asdict(step.request).items() if k != "origin"}}
                 for step in chain]
    raw = json.dumps([bot, described], sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


class ResponseCache:
    """Cached replies by key: in this process, or in Redis (`link`)."""

    def __init__(self, link: RedisLink | None = None) -> None:
        self.link = link
        self._entries: OrderedDict[str, tuple[float, CachedReply]] = OrderedDict()

    async def get(self, key: str) -> CachedReply | None:
        if self.link is not None:
            link = self.link
            try:
                raw = await link.call(lambda: link.client().get(PREFIX + key))
            except RedisDown:
                return None
            return _loads(raw) if raw is not None else None
        found = self._entries.get(key)
        if found is None:
            return None
        expires, reply = found
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return reply

    async def put(self, key: str, reply: CachedReply, ttl: float) -> None:
        if self.link is not None:
            link = self.link
            raw = json.dumps(asdict(reply))
            try:
                await link.call(lambda: link.client().set(PREFIX + key, raw, px=max(1, round(ttl * 1000))))
            except RedisDown:
                pass
            return
        self._entries[key] = (time.monotonic() + ttl, reply)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)


def _loads(raw: Any) -> CachedReply | None:
    try:
        data = json.loads(raw)
        return CachedReply(str(data["text"]), str(data["provider"]), str(data["model"]),
                           data.get("finish_reason"))
    except (ValueError, KeyError, TypeError):
        return None  # another version's entry: a miss
