"""`[limits]`: per-user requests per minute and tokens per day, per-bot and per-project spend per day,
in-process and through a real redis-server; Poe gets a polite error event, /v1 a 429 with Retry-After
in OpenAI's shape, and nothing is charged for a refused request (docs/limits.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
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
