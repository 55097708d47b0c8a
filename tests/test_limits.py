"""`[limits]`: per-user requests per minute and tokens per day, per-bot and per-project spend per day,
in-process and through a real redis-server; Poe gets a polite error event, /v1 a 429 with Retry-After
in OpenAI's shape, and nothing is charged for a refused request (docs/limits.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fastapi_poe as fp
import httpx
import pytest

from polybot.app import BotServer, create_app
from polybot.cli import main
from polybot.config import BotLimits, LimitsSettings
from polybot.limits import caps_for
from polybot.manifest import load_manifest
from polybot.redisconn import redact
from polybot.runtime import Runtime, runtimes_from_manifest
from tests.fakes.server import free_port, poe_session, serve_in_thread
from tests.redisproc import redis_server

#: Echo at 0.01 USD per token in and out: an echo reply of a few words costs a few cents.
PRICES = '\n[limits.prices."echo/echo"]\ninput = 10000\noutput = 10000\n'


def make_project(root: Path, settings: str, bots: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "polybot.toml").write_text(settings)
    for name, toml in bots.items():
        (root / "bots" / name).mkdir(parents=True)
        (root / "bots" / name / "bot.toml").write_text('provider = "echo"\n' + toml)
        (root / "bots" / name / "system.md.j2").write_text("Hi.")
    assert main(["build", "--project", str(root)]) == 0
    return root


@contextmanager
def serving(root: Path, environ: dict[str, str] | None = None) -> Iterator[tuple[str, BotServer]]:
    server = create_app(load_manifest(root / "build" / "manifest.json"), root, allow_without_key=True,
                        environ=environ or {})
    with serve_in_thread(server.app) as base:
        yield base, server


async def poe(base: str, bot: str, text: str, user: str = "u1") -> tuple[str, list[fp.PartialResponse]]:
    request = fp.QueryRequest(version="1.2", type="query", query=[fp.ProtocolMessage(role="user", content=text)],
                              user_id=user, conversation_id="c1", message_id="m1")
    events = []
    async with poe_session() as session:
        async for m in fp.stream_request(request, bot, "x" * 32, base_url=base + "/", num_tries=1,
                                         session=session):
            events.append(m)
    return "".join(m.text for m in events), events


def error_of(events: list[Any]) -> Any:
    """The error event of a reply (fastapi_poe's client raises it as BotError, with the event's JSON)."""
    return next((e for e in events if isinstance(e, fp.ErrorResponse)), None)


async def ask_error(base: str, bot: str, text: str, user: str = "u1") -> dict[str, Any]:
    try:
        text, _ = await poe(base, bot, text, user)
    except fp.BotError as exc:
        return dict(json.loads(str(exc)))
    raise AssertionError(f"expected an error event, got {text!r}")


def v1(base: str, bot: str, text: str, **extra: Any) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", timeout=10, json={
        "model": bot, "messages": [{"role": "user", "content": text}], **extra})


def test_bot_toml_caps_override_the_projects() -> None:
    project = LimitsSettings(user_requests_per_minute=5, bot_spend_per_day=1.0, project_spend_per_day=3.0)
    caps = caps_for(project, BotLimits(bot_spend_per_day=0.5))
    assert (caps.user_requests_per_minute, caps.bot_spend_per_day, caps.project_spend_per_day) == (5, 0.5, 3.0)
    assert not caps_for(LimitsSettings(), None).counting


def test_requests_per_minute_per_user(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_project(tmp_path, "[limits]\nuser_requests_per_minute = 2\n", {"Capped": ""})
    caplog.set_level(logging.INFO, logger="polybot.reply")
    with serving(root) as (base, _):
        assert asyncio.run(poe(base, "Capped", "one"))[0] == "one"
        assert asyncio.run(poe(base, "Capped", "two"))[0] == "two"
        error = asyncio.run(ask_error(base, "Capped", "three"))
        assert error["allow_retry"] is False
        assert "2 messages in the last minute" in error["text"] and "Please wait" in error["text"]
        assert asyncio.run(poe(base, "Capped", "another user", user="u2"))[0] == "another user"
        # /v1: one user without a key, limited the same way, in OpenAI's error shape.
        assert v1(base, "Capped", "a").status_code == 200
        assert v1(base, "Capped", "b").status_code == 200
        refused = v1(base, "Capped", "c")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert refused.json()["error"]["type"] == "requests"
        assert v1(base, "Capped", "d", user="someone-else").status_code == 200
    limited = [r.reply for r in caplog.records if getattr(r, "reply", {}).get("outcome") == "limited"]
    assert len(limited) == 2
    assert limited[0]["attempts"] == 0 and limited[0]["bot"] == "Capped" and limited[0]["cached"] is False


def test_tokens_per_day_and_nothing_is_charged_for_a_refusal(tmp_path: Path) -> None:
    root = make_project(tmp_path, "", {"Tokens": "[limits]\nuser_tokens_per_day = 10\n"})
    with serving(root) as (base, server):
        # Echo counts words: 1 system + 6 in, 6 out = 13 tokens, over 10 once charged.
        assert asyncio.run(poe(base, "Tokens", "one two three four five six"))[0].startswith("one")
        error = asyncio.run(ask_error(base, "Tokens", "again"))
        assert "today's 10 tokens" in error["text"] and "midnight UTC" in error["text"]
        assert error["allow_retry"] is False
        protection = server.bots["Tokens"].runtime.protection
        assert protection is not None
        day = time.strftime("%Y-%m-%d", time.gmtime())
        counters = protection.limiter.counters()
        assert asyncio.run(counters.read_days([f"polybot:tokens:Tokens:u1:{day}"])) == [13.0]
        response = v1(base, "Tokens", "x", user="u9")
        assert response.status_code == 200  # another user
        assert asyncio.run(counters.read_days([f"polybot:tokens:Tokens:u1:{day}"])) == [13.0]


def test_bot_and_project_spend_per_day(tmp_path: Path) -> None:
    settings = "[limits]\nproject_spend_per_day = 0.5\n" + PRICES
    root = make_project(tmp_path, settings, {"Spender": "[limits]\nbot_spend_per_day = 0.2\n", "Other": ""})
    with serving(root) as (base, _):
        # "a b c" costs (1 + 3 + 3) tokens x 0.01 = 0.07 USD: three replies reach the bot's 0.2.
        for _ in range(3):
            assert asyncio.run(poe(base, "Spender", "a b c"))[0] == "a b c"
        error = asyncio.run(ask_error(base, "Spender", "a b c"))
        assert "Spender has used its daily budget" in error["text"]
        refused = v1(base, "Spender", "a b c")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
        assert refused.headers["x-should-retry"] == "false"
        # The project's 0.5: 0.21 spent by Spender, Other may spend until the total reaches it.
        answered = 0
        while v1(base, "Other", "a b c").status_code == 200:
            answered += 1
            assert answered < 10
        assert answered == 5  # 0.21 + 4 x 0.07 = 0.49 < 0.5, the fifth brings it to 0.56
        error = asyncio.run(ask_error(base, "Other", "hello"))
        assert "shared daily budget" in error["text"]


def test_a_bot_without_limits_is_not_gated(tmp_path: Path) -> None:
    root = make_project(tmp_path, "", {"Free": ""})
    with serving(root) as (base, server):
        runtime = server.bots["Free"].runtime
        assert runtime.protection is not None and runtime.protection.link is None
        for _ in range(5):
            assert v1(base, "Free", "hi").status_code == 200


def test_redis_urls_are_redacted() -> None:
    assert redact("redis://:s3cret@db.example:6380/2") == "redis://***@db.example:6380/2"
    assert redact("rediss://user:s3cret@db.example/0") == "rediss://***@db.example/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_shared_counters_in_redis_and_redis_down_fails_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_project(tmp_path / "p", "[limits]\nuser_requests_per_minute = 3\n", {"Shared": ""})
    caplog.set_level(logging.WARNING, logger="polybot")
    with redis_server(tmp_path) as redis:
        env = {"POLYBOT_REDIS_URL": redis.url}
        with serving(root, env) as (one, _), serving(root, env) as (two, _):
            assert v1(one, "Shared", "a").status_code == 200
            assert v1(two, "Shared", "b").status_code == 200
            assert v1(one, "Shared", "c").status_code == 200
            assert v1(two, "Shared", "d").status_code == 429  # the fourth, on the other server
            redis.kill()
            started = time.monotonic()
            for _ in range(4):  # open: answered, without the shared counts
                assert v1(one, "Shared", "e").status_code == 200
            assert time.monotonic() - started < 4
    warnings = [r.getMessage() for r in caplog.records if "is unreachable" in r.getMessage()]
    back = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    # Once per outage, not once per request (a loaded machine may time out a call before the kill).
    assert 1 <= len(warnings) <= len(back) + 1, warnings
    assert "on_redis_down = \"open\"" in warnings[-1]


def test_redis_down_fails_closed_politely(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    settings = f'[limits]\nuser_requests_per_minute = 100\non_redis_down = "closed"\nredis = "{dead}"\n'
    root = make_project(tmp_path, settings, {"Closed": ""})
    caplog.set_level(logging.WARNING, logger="polybot")
    with serving(root) as (base, _):
        started = time.monotonic()
        error = asyncio.run(ask_error(base, "Closed", "hi"))
        assert error["allow_retry"] is True and "cannot check its usage limits" in error["text"]
        refused = v1(base, "Closed", "hi")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert refused.json()["error"]["code"] == "limits_unavailable"
        assert time.monotonic() - started < 3
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "s3cret" not in logged and "redis://***@127.0.0.1" in logged
    assert "s3cret" not in refused.text and "s3cret" not in error["text"]


# --- The day caps reserve the most a reply can use before it, and settle to what it used after ---
# Echo at 0.01 USD a token, system prompt "Hi.", the message "ab c d": 10 characters, so the prompt
# is estimated at 10 // 3 + 1 = 4 tokens, as many as echo counts (1 + 3 words); it answers 3.


class Flight:
    """Holds the next echo reply in flight after its first word (its usage already counted) until
    released; then it finishes, or raises when `fail` is set."""

    def __init__(self) -> None:
        self.holding = True
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = False


@pytest.fixture
def flight(monkeypatch: pytest.MonkeyPatch) -> Flight:
    from polybot.providers.base import ChatRequest, ProviderError, Usage
    from polybot.providers.echo import EchoProvider

    held = Flight()
    echo = EchoProvider.stream

    async def stream(self: EchoProvider, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        chunks = echo(self, request, usage)
        first = await anext(chunks)
        if held.holding:
            held.holding = False
            held.started.set()
            yield first
            await held.release.wait()
            if held.fail:
                raise ProviderError("the provider went away", retryable=False)
        else:
            yield first
        async for chunk in chunks:
            yield chunk

    monkeypatch.setattr(EchoProvider, "stream", stream)
    return held


def runtimes(tmp_path: Path, settings: str, bots: dict[str, str]) -> dict[str, Runtime]:
    root = make_project(tmp_path, settings, bots)
    return {r.spec.name: r for r in runtimes_from_manifest(load_manifest(root / "build" / "manifest.json"), root, {})}


def ask(user: str = "u1") -> fp.QueryRequest:
    return fp.QueryRequest(version="1.2", type="query", query=[fp.ProtocolMessage(role="user", content="ab c d")],
                           user_id=user, conversation_id="c1", message_id="m1")


async def reply(bot: Runtime, user: str = "u1") -> str:
    """The reply's text, or its error event's."""
    events = [e async for e in bot.respond(ask(user))]
    error = error_of(events)
    return str(error.text) if error is not None else "".join(getattr(e, "text", "") for e in events)


async def totals(bot: Runtime, *keys: str) -> list[float]:
    assert bot.protection is not None
    return [round(t, 6) for t in await bot.protection.limiter.counters().read_days(keys)]


def day_keys(bot: str, user: str = "u1") -> tuple[str, str, str]:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return f"polybot:tokens:{bot}:{user}:{day}", f"polybot:spend:bot:{bot}:{day}", f"polybot:spend:project:{day}"


def test_a_reservation_is_seen_by_a_concurrent_check(tmp_path: Path, flight: Flight) -> None:
    # max_tokens 10: a reply reserves (4 + 10) x 0.01 = 0.14 USD, over the cap of 0.1 by itself.
    bot = runtimes(tmp_path, PRICES, {"Held": "max_tokens = 10\n[limits]\nbot_spend_per_day = 0.1\n"})["Held"]
    _, spend, _ = day_keys("Held")

    async def run() -> None:
        first = asyncio.ensure_future(reply(bot))
        await flight.started.wait()
        assert await totals(bot, spend) == [0.14]
        # Nothing is spent yet, but the reply in flight may spend 0.14: another user's is refused.
        assert "Held has used its daily budget" in await reply(bot, "u2")
        flight.release.set()
        assert await first == "ab c d"
        assert await totals(bot, spend) == [0.07]  # settled to what it used: under the cap again
        assert await reply(bot, "u2") == "ab c d"
        assert await totals(bot, spend) == [0.14]

    asyncio.run(run())


def test_settling_lowers_the_reservation_to_what_the_reply_used(tmp_path: Path, flight: Flight) -> None:
    settings = "[limits]\nproject_spend_per_day = 5.0\n" + PRICES
    bot = runtimes(tmp_path, settings, {"Settle": "max_tokens = 10\n[limits]\nuser_tokens_per_day = 1000\n"})["Settle"]
    tokens, _, project = day_keys("Settle")

    async def run() -> None:
        first = asyncio.ensure_future(reply(bot))
        await flight.started.wait()
        assert await totals(bot, tokens, project) == [14.0, 0.14]  # 4 estimated in + max_tokens out
        flight.release.set()
        assert await first == "ab c d"
        assert await totals(bot, tokens, project) == [7.0, 0.07]  # 4 in + 3 out, as echo counted them

    asyncio.run(run())


@pytest.mark.parametrize("ending", ["failed", "abandoned"])
def test_a_failed_or_abandoned_reply_settles(tmp_path: Path, flight: Flight, ending: str) -> None:
    bot = runtimes(tmp_path, PRICES, {"Ends": "max_tokens = 10\n[limits]\nuser_tokens_per_day = 1000\n"
                                              "bot_spend_per_day = 5.0\n"})["Ends"]
    tokens, spend, _ = day_keys("Ends")

    async def run() -> None:
        events = bot.respond(ask())
        first = asyncio.ensure_future(anext(events))
        await flight.started.wait()
        await first  # the first word reached the client
        assert await totals(bot, tokens, spend) == [14.0, 0.14]
        if ending == "abandoned":
            await events.aclose()  # the client went away mid-reply
        else:
            flight.fail = True
            flight.release.set()
            rest = [e async for e in events]
            assert error_of(rest) is not None
        # What the provider used (echo counted its usage before the first word), not the reservation.
        assert await totals(bot, tokens, spend) == [7.0, 0.07]

    asyncio.run(run())


def test_a_reply_reserves_on_every_counter_or_on_none(tmp_path: Path, flight: Flight) -> None:
    settings = "[limits]\nproject_spend_per_day = 0.1\n" + PRICES
    bots = runtimes(tmp_path, settings, {"Large": "max_tokens = 10\n",
                                         "Small": "[limits]\nuser_tokens_per_day = 1000\nbot_spend_per_day = 5.0\n"})
    tokens, spend, project = day_keys("Small")

    async def run() -> None:
        first = asyncio.ensure_future(reply(bots["Large"]))
        await flight.started.wait()  # Large's 0.14 reserved on the project: at its cap
        assert "shared daily budget" in await reply(bots["Small"])
        # Small's own counters had room, but it reserved nothing on them either.
        assert await totals(bots["Small"], tokens, spend, project) == [0.0, 0.0, 0.14]
        flight.release.set()
        assert await first == "ab c d"
        assert await reply(bots["Small"]) == "ab c d"

    asyncio.run(run())


def test_redis_reserves_atomically_and_all_or_nothing(tmp_path: Path) -> None:
    from polybot.limits import Limiter, RedisCounters
    from polybot.redisconn import RedisLink

    with redis_server(tmp_path) as redis:
        async def run() -> None:
            counters = RedisCounters(RedisLink(redis.url, "answering without the shared limits"))
            expire_at = int(time.time()) + 60
            await counters.add_days({"b": 2.0}, expire_at)
            assert await counters.reserve([("a", 10.0, 5.0), ("b", 2.0, 1.0)], expire_at) == 1
            assert await counters.read_days(["a", "b"]) == [0.0, 2.0]  # "a" had room: not reserved either
            assert await counters.reserve([("a", 10.0, 5.0), ("b", 3.0, 1.0)], expire_at) is None
            assert await counters.read_days(["a", "b"]) == [5.0, 3.0]
            # 50 checks at once against a cap of 10 tokens, 1 reserved each: exactly 10 get through.
            limiter = Limiter(LimitsSettings(user_tokens_per_day=10), counters.link)
            caps = caps_for(limiter.settings, None)
            results = await asyncio.gather(*(limiter.check("Bot", "u", caps, 1, 0.0) for _ in range(50)))
            assert sum(refusal is None for _, refusal in results) == 10
            holds = [hold for hold, refusal in results if refusal is None]
            await asyncio.gather(*(limiter.settle(hold, 0.5, None) for hold in holds))
            assert await counters.read_days([day_keys("Bot", "u")[0]]) == [5.0]
            assert 0 < await counters.link.client().ttl(day_keys("Bot", "u")[0]) <= 86400
            await limiter.aclose()

        asyncio.run(run())
