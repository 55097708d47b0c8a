"""Caps per user, per bot and per project (docs/limits.md): reserved before a reply, settled after it.

Two kinds of counter, both either in this process or shared by every worker and replica through
Redis (POLYBOT_REDIS_URL or `[limits] redis`):

- Requests per minute per user: the `limits` library's moving window (its MemoryStorage, or its
  async Redis storage on the shared connection). A request is counted only when it fits, so a
  refused one costs the user nothing.
- Tokens per day per user and dollars per day per bot and per project: authorize, then capture,
  like pricing.Meter with Poe's cost API. Before the reply, in one atomic step, a reply is refused
  when any of its counters is already at or over its cap, else the most it can use is reserved on
  every one (its prompt's tokens estimated from its length plus its output limit, priced by
  costs.reply_cost); after it, whatever its outcome, the reservation is settled: each counter gets
  what the reply used minus what it reserved. So concurrent replies see each other's reservations
  at once, and the counters end at the true total. Those are not `limits`' weighted hits (whole
  numbers only, windows that start at the first hit; these end at midnight UTC): on Redis a check
  is one Lua script (_RESERVE: GET and compare every counter, then INCRBYFLOAT and EXPIREAT each,
  all or none) and a settlement another (_CHARGE); in this process a dict, read and written with
  no await in between, so the event loop makes it atomic.

The overspend is bounded by the replies that used more than they reserved (tool rounds, a
fallback dearer than the primary, a prompt denser than 3 characters a token), by that excess
(tests/e2e/test_redis.py measures it). While Redis is down, `on_redis_down = "open"` answers
without the shared counts (logged once), "closed" refuses politely with allow_retry (the outage is
transient). A reservation whose settlement is lost to an outage expires with its counter at the
end of the UTC day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from polybot.config import BotLimits, LimitsSettings, ModelPrice
from polybot.redisconn import RedisDown, RedisLink

log = logging.getLogger("polybot")

#: Every counter's key starts with this (one Redis database, or URL, per project).
PREFIX = "polybot"

#: Reserve on every counter of a reply, or on none: KEYS the counters, ARGV[1] the UTC day's end,
#: ARGV[1 + i] KEYS[i]'s cap and ARGV[1 + n + i] the amount to reserve on it. Returns 0 when
#: reserved, else i for the first counter already at or over its cap (and reserves nothing).
_RESERVE = """
local n = #KEYS
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[1 + i]) then
    return i
  end
end
for i = 1, n do
  if tonumber(ARGV[1 + n + i]) ~= 0 then
    redis.call('INCRBYFLOAT', KEYS[i], ARGV[1 + n + i])
    redis.call('EXPIREAT', KEYS[i], ARGV[1])
  end
end
return 0
"""

#: INCRBYFLOAT each KEYS[i] by ARGV[i + 1], then expire it at ARGV[1] (the UTC day's end), atomically.
_CHARGE = """
for i, key in ipairs(KEYS) do
  redis.call('INCRBYFLOAT', key, ARGV[i + 1])
  redis.call('EXPIREAT', key, ARGV[1])
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class Caps:
    """One bot's caps: its bot.toml `[limits]` over polybot.toml's."""

    user_requests_per_minute: int | None = None
    user_tokens_per_day: int | None = None
    bot_spend_per_day: float | None = None
    project_spend_per_day: float | None = None
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)

    @property
    def counting(self) -> bool:
        """Whether any cap applies (else a reply needs no check and no charge)."""
        return any(v is not None for v in (self.user_requests_per_minute, self.user_tokens_per_day,
                                           self.bot_spend_per_day, self.project_spend_per_day))


def caps_for(project: LimitsSettings, bot: BotLimits | None) -> Caps:
    mine = bot.model_dump(exclude_unset=True, exclude={"prices"}) if bot is not None else {}
    return Caps(
        user_requests_per_minute=mine.get("user_requests_per_minute", project.user_requests_per_minute),
        user_tokens_per_day=mine.get("user_tokens_per_day", project.user_tokens_per_day),
        bot_spend_per_day=mine.get("bot_spend_per_day", project.bot_spend_per_day),
        project_spend_per_day=project.project_spend_per_day,
        prices={**project.prices, **(bot.prices if bot is not None else {})},
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reply is not made: a polite message, and how the OpenAI endpoint says it."""

    message: str
    status: int  # 429: over a limit; 503: the counters cannot be reached (on_redis_down = "closed")
    retry_after: float  # seconds
    code: str  # OpenAI's error code
    allow_retry: bool  # for Poe: retrying now cannot help a user over a limit


@dataclass(slots=True)
class Hold:
    """What one reply reserved on its day counters, until `Limiter.settle` turns it into what the
    reply used. Its keys are the day's when it was made: a reply that ends after midnight settles on
    the day that counted it (an expired key, which the settlement leaves expired)."""

    expire_at: int
    tokens_key: str | None = None  # the user's tokens today, when capped
    spend_keys: tuple[str, ...] = ()  # the bot's and the project's spend today, those capped
    tokens: float = 0.0  # reserved on tokens_key (0 when nothing could be: Redis down)
    cost: float = 0.0  # reserved on each of spend_keys
    settled: bool = False


class Counters(Protocol):
    """Where the counts live: this process, or Redis."""

    async def hit_minute(self, key: str, limit: int) -> float | None:
        """Count one request in `key`'s last minute: None when it fits, else seconds until it would."""

    async def read_days(self, keys: Sequence[str]) -> list[float]:
        """Today's totals of `keys` (0 for a counter not charged yet)."""

    async def reserve(self, wanted: Sequence[tuple[str, float, float]], expire_at: int) -> int | None:
        """Atomically: the index in `wanted` (key, cap, amount) of the first counter already at or
        over its cap, reserving nothing; else None, with each amount added to its counter."""

    async def add_days(self, amounts: Mapping[str, float], expire_at: int) -> None:
        """Add to today's counters (negative amounts too), which expire at `expire_at` (a Unix time)."""

    async def aclose(self) -> None: ...


class MemoryCounters:
    """One process's counters (the default: no Redis configured)."""

    def __init__(self) -> None:
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._days: dict[str, tuple[float, int]] = {}  # key -> (total, expires at)

    async def hit_minute(self, key: str, limit: int) -> float | None:
        return await _hit(self._window, key, limit)

    async def read_days(self, keys: Sequence[str]) -> list[float]:
        return self._read(keys)

    async def reserve(self, wanted: Sequence[tuple[str, float, float]], expire_at: int) -> int | None:
        # No await from the read to the write: no other reply's check can come in between.
        totals = self._read([key for key, _, _ in wanted])
        for i, ((_, cap, _), total) in enumerate(zip(wanted, totals, strict=True)):
            if total >= cap:
                return i
        self._add({key: amount for key, _, amount in wanted if amount}, expire_at)
        return None

    async def add_days(self, amounts: Mapping[str, float], expire_at: int) -> None:
        self._add(amounts, expire_at)

    def _read(self, keys: Sequence[str]) -> list[float]:
        now = time.time()
        return [total if expires > now else 0.0 for total, expires in (self._days.get(k, (0.0, 0)) for k in keys)]

    def _add(self, amounts: Mapping[str, float], expire_at: int) -> None:
        now = time.time()
        for key in [k for k, (_, expires) in self._days.items() if expires <= now]:
            del self._days[key]  # yesterday's
        for key, amount in amounts.items():
            total, _ = self._days.get(key, (0.0, expire_at))
            self._days[key] = (total + amount, expire_at)

    async def aclose(self) -> None:
        self._days.clear()


class RedisCounters:
    """Counters every worker and replica shares, on the process's one Redis connection."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._window: Any = None
        self._reserve: Any = None
        self._charge: Any = None

    def _limiter(self) -> Any:
        if self._window is None:
            from limits.aio.storage import RedisStorage
            from limits.aio.strategies import MovingWindowRateLimiter

            pool = self.link.client().connection_pool  # the URL's scheme, auth and TLS live in the pool
            self._window = MovingWindowRateLimiter(RedisStorage(
                "async+redis://", implementation="redispy", key_prefix=f"{PREFIX}:window", connection_pool=pool))
        return self._window

    async def hit_minute(self, key: str, limit: int) -> float | None:
        return await self.link.call(lambda: _hit(self._limiter(), key, limit))

    async def read_days(self, keys: Sequence[str]) -> list[float]:
        values = await self.link.call(lambda: self.link.client().mget(list(keys)))
        return [float(v) if v is not None else 0.0 for v in values]

    async def reserve(self, wanted: Sequence[tuple[str, float, float]], expire_at: int) -> int | None:
        if self._reserve is None:
            self._reserve = self.link.client().register_script(_RESERVE)
        keys = [key for key, _, _ in wanted]
        args = [expire_at, *(repr(cap) for _, cap, _ in wanted), *(repr(amount) for _, _, amount in wanted)]
        over = int(await self.link.call(lambda: self._reserve(keys=keys, args=args)))
        return over - 1 if over else None

    async def add_days(self, amounts: Mapping[str, float], expire_at: int) -> None:
        if self._charge is None:
            self._charge = self.link.client().register_script(_CHARGE)
        keys = list(amounts)
        await self.link.call(lambda: self._charge(keys=keys, args=[expire_at, *(repr(amounts[k]) for k in keys)]))

    async def aclose(self) -> None:
        await self.link.aclose()


async def _hit(window: Any, key: str, limit: int) -> float | None:
    from limits import RateLimitItemPerMinute

    item = RateLimitItemPerMinute(limit)
    if await window.hit(item, key):
        return None
    stats = await window.get_window_stats(item, key)
    return max(1.0, float(stats.reset_time) - time.time())


class Limiter:
    """The caps of every bot a process serves, on one set of counters."""

    def __init__(self, settings: LimitsSettings, link: RedisLink | None = None) -> None:
        self.settings = settings
        self.closed = settings.on_redis_down == "closed"
        self.link = link
        self._counters: Counters | None = None
        self._unpriced: set[str] = set()

    def counters(self) -> Counters:
        if self._counters is None:
            self._counters = RedisCounters(self.link) if self.link is not None else MemoryCounters()
        return self._counters

    async def check(self, bot: str, user: str, caps: Caps, tokens: float,
                    cost: float) -> tuple[Hold, Refusal | None]:
        """Reserve the most this reply can use (`tokens`, and `cost` USD) on its day counters, and
        count the request in the user's minute, or say why the reply may not be made. The Hold is
        what to settle when the reply ends (a refused one is settled already)."""
        day, resets = _today()
        keys = _day_keys(bot, user, day)
        hold = Hold(int(resets.timestamp()), keys[0] if caps.user_tokens_per_day is not None else None,
                    tuple(k for k, cap in ((keys[1], caps.bot_spend_per_day), (keys[2], caps.project_spend_per_day))
                          if cap is not None))
        wanted = [(key, float(cap), float(tokens) if key == hold.tokens_key else cost)
                  for key, cap in ((keys[0], caps.user_tokens_per_day), (keys[1], caps.bot_spend_per_day),
                                   (keys[2], caps.project_spend_per_day)) if cap is not None]
        try:
            if wanted:
                over = await self.counters().reserve(wanted, hold.expire_at)
                if over is not None:
                    hold.settled = True  # nothing reserved
                    return hold, _over_day(bot, wanted[over][0], wanted[over][1], resets)
                hold.tokens = float(tokens) if hold.tokens_key is not None else 0.0
                hold.cost = cost if hold.spend_keys else 0.0
            if caps.user_requests_per_minute is not None:
                wait = await self.counters().hit_minute(f"{bot}:{user}", caps.user_requests_per_minute)
                if wait is not None:
                    await self.settle(hold, 0, None)
                    return hold, _over_minute(bot, caps.user_requests_per_minute, wait)
        except RedisDown:
            if self.closed:
                await self.settle(hold, 0, None)
                return hold, Refusal(f"{bot} cannot check its usage limits right now. Please try again in a moment.",
                                     503, 2.0, "limits_unavailable", allow_retry=True)
        return hold, None

    async def settle(self, hold: Hold, tokens: float, cost: float | None) -> None:
        """Turn a reservation into what the reply used (`cost` None: not priced, so 0): add the
        difference to each counter, once. Never raises: a settlement lost to a Redis outage is
        logged once by the link, and its reservation expires with the day."""
        if hold.settled:
            return
        hold.settled = True
        amounts: dict[str, float] = {}
        if hold.tokens_key is not None and tokens != hold.tokens:
            amounts[hold.tokens_key] = tokens - hold.tokens
        for key in hold.spend_keys:
            if (cost or 0.0) != hold.cost:
                amounts[key] = (cost or 0.0) - hold.cost
        if not amounts:
            return
        try:
            await self.counters().add_days(amounts, hold.expire_at)
        except RedisDown:
            pass  # already logged by the link, once per outage

    def unpriced(self, provider: str, model: str) -> None:
        """Say once per model that a spend cap cannot count it."""
        name = f"{provider}/{model}"
        if name not in self._unpriced:
            self._unpriced.add(name)
            log.warning("limits: no price is known for %s, so spend caps do not count its replies; add "
                        "[limits.prices.%s] to polybot.toml (input and output, USD per million tokens)",
                        name, _toml_key(name))

    async def aclose(self) -> None:
        if self._counters is not None:
            await self._counters.aclose()


def _today() -> tuple[str, datetime]:
    now = datetime.now(UTC)
    end = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return now.strftime("%Y-%m-%d"), end


def _day_keys(bot: str, user: str, day: str) -> tuple[str, str, str]:
    return (f"{PREFIX}:tokens:{bot}:{user}:{day}", f"{PREFIX}:spend:bot:{bot}:{day}",
            f"{PREFIX}:spend:project:{day}")


def _over_day(bot: str, key: str, cap: float, resets: datetime) -> Refusal:
    wait = max(1.0, (resets - datetime.now(UTC)).total_seconds())
    when = f"at midnight UTC, in {_duration(wait)}"
    if key.startswith(f"{PREFIX}:tokens:"):
        message = (f"You have used today's {int(cap):,} tokens with {bot}. The limit resets {when}; "
                   "please come back then.")
        return Refusal(message, 429, wait, "rate_limit_exceeded", allow_retry=False)
    if key.startswith(f"{PREFIX}:spend:bot:"):
        message = f"{bot} has used its daily budget. It will answer again {when}; please try again then."
    else:
        message = (f"The bots on this server, {bot} among them, have used their shared daily budget. They will "
                   f"answer again {when}; please try again then.")
    return Refusal(message, 429, wait, "insufficient_quota", allow_retry=False)


def _over_minute(bot: str, limit: int, wait: float) -> Refusal:
    message = (f"You have sent {bot} {limit} message{'s' if limit != 1 else ''} in the last minute, as many "
               f"as it takes per minute. Please wait {_duration(wait)} and try again.")
    return Refusal(message, 429, wait, "rate_limit_exceeded", allow_retry=False)


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    return f"about {round(minutes / 60)} hours"


def _toml_key(name: str) -> str:
    return f'"{name}"'
