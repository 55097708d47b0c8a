"""The gate before and after every reply a bot makes with its providers: limits, then the cache.

One `Protection` per process (serve: per worker; dev: per project settings) holds the limiter and
the response cache every bot's `Runtime` shares, and their one Redis connection. `Runtime.complete`
asks it for a `Gate` per reply: `before` refuses a reply over a limit or answers it from the cache
(either way without a provider call, logged through `emit_reply`) and otherwise reserves the most
the reply can use on the day caps; `after` settles that reservation to what the reply used, and
caches it. The runtime calls `after` in a `finally`, so a reply that failed, or that its client
abandoned, settles too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import fastapi_poe as fp

from polybot.cache import CachedReply, ResponseCache, cache_key
from polybot.config import CacheSettings, ProjectSettings
from polybot.costs import reply_cost
from polybot.limits import Caps, Hold, Limiter, caps_for
from polybot.manifest import BotSpec
from polybot.pricing import most_tokens
from polybot.providers.base import Usage
from polybot.redisconn import REDIS_ENV, RedisLink
from polybot.reliability import CONTENT_KEYS, Event, ProviderPool, ReplyInfo, Step, emit_reply

log = logging.getLogger("polybot")


class Protection:
    """The limits and the cache of every bot in one process."""

    def __init__(self, settings: ProjectSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        url = environ.get(REDIS_ENV) or settings.limits.redis or None
        consequence = ("refusing replies (on_redis_down = \"closed\")" if settings.limits.on_redis_down == "closed"
                       else "answering without the shared limits (on_redis_down = \"open\")")
        self.link = RedisLink(url, consequence) if url else None
        self.limiter = Limiter(settings.limits, self.link)
        self.cache = ResponseCache(self.link)

    def gate(self, spec: BotSpec, request: fp.QueryRequest, chain: Sequence[Step],
             pool: ProviderPool, fields: Mapping[str, Any] | None = None) -> Gate | None:
        """The gate of one reply, or None when no cap and no cache applies to this bot. `fields`
        go into the record of a reply the gate answers (ids, and the prompt for the reply store)."""
        caps = caps_for(self.settings.limits, spec.limits)
        cache = spec.cache or self.settings.cache
        key = cache_key(spec.name, chain) if cache.enabled else None
        if not caps.counting and key is None:
            return None
        return Gate(self, spec.name, request.user_id, caps, cache, key, chain, pool, fields or {})

    async def aclose(self) -> None:
        await self.limiter.aclose()


class Gate:
    """One reply's checks: before it (limits, cache) and after it (charges, cache)."""

    def __init__(self, protection: Protection, bot: str, user: str, caps: Caps, cache: CacheSettings,
                 key: str | None, chain: Sequence[Step], pool: ProviderPool, fields: Mapping[str, Any]) -> None:
        self.protection, self.bot, self.user, self.caps = protection, bot, user, caps
        self.cache, self.key, self.chain, self.pool, self.fields = cache, key, chain, pool, fields
        self.started = time.monotonic()
        self.text: list[str] = []
        self.hold: Hold | None = None  # what the day caps reserved for this reply

    async def before(self, info: ReplyInfo) -> Event | None:
        """The one event that answers this reply without a provider call (a refusal or the cached
        reply), already logged; None to go ahead."""
        if self.caps.counting:
            tokens, cost = self._most()
            self.hold, refusal = await self.protection.limiter.check(self.bot, self.user, self.caps, tokens, cost)
            if refusal is not None:
                info.outcome, info.status, info.retry_after = "limited", refusal.status, refusal.retry_after
                info.code = refusal.code
                self._log("limited", self.chain[0].provider, self.chain[0].request.model, cached=False,
                          response=refusal.message)
                return fp.ErrorResponse(text=refusal.message, allow_retry=refusal.allow_retry)
        if self.key is not None:
            cached = await self.protection.cache.get(self.key)
            if cached is not None:
                if self.hold is not None:
                    await self.protection.limiter.settle(self.hold, 0, None)  # a cached reply costs nothing
                info.outcome, info.provider, info.model = "ok", cached.provider, cached.model
                info.usage = Usage(finish_reason=cached.finish_reason)
                self._log("ok", cached.provider, cached.model, cached=True, finish_reason=cached.finish_reason,
                          response=cached.text)
                return fp.PartialResponse(text=cached.text)
        return None

    def saw(self, event: Event) -> None:
        """An event of the reply as it streams (the text a cache entry keeps)."""
        if self.key is not None and isinstance(event, fp.PartialResponse) and not event.data:
            if event.is_replace_response:
                self.text.clear()
            self.text.append(event.text)

    async def after(self, info: ReplyInfo) -> None:
        """Settle the reservation to what the reply used (whatever its outcome: the provider counted
        it) and cache the reply."""
        if self.hold is not None:
            try:
                tokens, cost = self._used(info)
            except Exception:
                log.exception("limits: pricing %s's reply failed; it counts as what it reserved", self.bot)
                tokens, cost = self.hold.tokens, self.hold.cost
            await self.protection.limiter.settle(self.hold, tokens, cost)
        if self.key is not None and info.outcome == "ok" and not info.tool_rounds and self.text:
            usage = info.usage
            reply = CachedReply("".join(self.text), info.provider, info.model, usage.finish_reason)
            try:
                await self.protection.cache.put(self.key, reply, self.cache.ttl)
            except Exception:
                log.exception("cache: storing %s's reply failed", self.bot)

    def _most(self) -> tuple[int, float]:
        """The most tokens and USD this reply can use: the prompt's tokens estimated from its length
        (pricing.most_tokens, as Poe's cost API is authorized) plus its output limit, priced for the
        dearest model of the failover chain whose price is known (an unpriced one reserves nothing)."""
        first = self.chain[0].request
        chars = len(first.system) + sum(len(m.text) for m in first.messages)
        tokens, cost = 0, 0.0
        spend = self.caps.bot_spend_per_day is not None or self.caps.project_spend_per_day is not None
        for step in self.chain:
            tokens_in, tokens_out = most_tokens(chars, step.request.max_tokens)
            tokens = max(tokens, tokens_in + tokens_out)
            config = self.pool.configs.get(step.provider)
            if spend and config is not None:
                price = reply_cost(step.provider, config, step.request.model,
                                   Usage(input_tokens=tokens_in, output_tokens=tokens_out), self.caps.prices)
                cost = max(cost, float(price) if price is not None else 0.0)
        return tokens, cost

    def _used(self, info: ReplyInfo) -> tuple[float, float | None]:
        """The tokens and USD the reply used (cost None: no price known); nothing when no provider
        answered."""
        if not info.provider:
            return 0.0, None
        usage = info.usage
        tokens = float((usage.input_tokens or 0) + (usage.output_tokens or 0))
        config = self.pool.configs.get(info.provider)
        if config is None or (self.caps.bot_spend_per_day is None and self.caps.project_spend_per_day is None):
            return tokens, None
        price = reply_cost(info.provider, config, info.model, usage, self.caps.prices)
        if price is None and tokens:
            self.protection.limiter.unpriced(info.provider, info.model)
        return tokens, float(price) if price is not None else None

    def _log(self, outcome: str, provider: str, model: str, *, cached: bool, response: str,
             finish_reason: str | None = None) -> None:
        record: dict[str, Any] = {
            "event": "reply", "bot": self.bot, "provider": provider, "model": model, "attempts": 0,
            "fallback": False, "outcome": outcome, "tool_rounds": 0, "ttft_ms": None,
            "duration_ms": round((time.monotonic() - self.started) * 1000), "finish_reason": finish_reason,
            "input_tokens": None, "output_tokens": None, "reasoning_tokens": None, "cached_tokens": None,
            "cached": cached, "calls": [], "tool_calls": [], "ts": time.time(),
            **{k: v for k, v in self.fields.items() if k not in CONTENT_KEYS},
        }
        emit_reply(record, content={"prompt": self.fields.get("prompt"), "response": response})
